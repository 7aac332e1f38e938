//! `cargo xtask dist` and `cargo xtask release X.Y.Z`: the release chores.
//!
//! `dist` builds the `authcfg` binary in release mode and puts it with a
//! `SHA256SUMS` file into `target/dist/`, the folder a release uploads.
//! `release` bumps the version of every workspace crate, moves the changelog's
//! Unreleased section under the new version and runs the checks of `.ci/run`,
//! so that a release commit is one command and a review away.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use sha2::{Digest, Sha256};

/// Name of the binary that `dist` ships.
const BINARY: &str = "authcfg";

/// Heading of the changelog section that collects unreleased changes.
const UNRELEASED_HEADING: &str = "## [Unreleased]";

/// Runs `cargo xtask dist`.
pub(crate) fn dist(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        bail!("`cargo xtask dist` takes no arguments, got {extra:?}");
    }
    let root = workspace_root();

    crate::run(&[
        "cargo",
        "build",
        "--release",
        "--locked",
        "--package",
        "authcfg-server",
        "--bin",
        BINARY,
    ])?;

    let target = target_dir(&root);
    let built = target.join("release").join(BINARY);
    let dist = target.join("dist");
    std::fs::create_dir_all(&dist)
        .with_context(|| format!("failed to create {:?}", dist.display()))?;
    let shipped = dist.join(BINARY);
    std::fs::copy(&built, &shipped).with_context(|| {
        format!(
            "failed to copy {:?} to {:?}",
            built.display(),
            shipped.display()
        )
    })?;

    let bytes = std::fs::read(&shipped)
        .with_context(|| format!("failed to read {:?}", shipped.display()))?;
    let sums = format!("{}  {BINARY}\n", hex(&Sha256::digest(&bytes)));
    let sums_path = dist.join("SHA256SUMS");
    std::fs::write(&sums_path, &sums)
        .with_context(|| format!("failed to write {:?}", sums_path.display()))?;

    crate::announce(&[&format!("wrote {} and SHA256SUMS", shipped.display())]);
    Ok(())
}

/// Runs `cargo xtask release X.Y.Z`.
pub(crate) fn release(args: &[String]) -> anyhow::Result<()> {
    let (version, run_checks) = match args {
        [version] => (version.as_str(), true),
        [version, flag] if flag == "--no-checks" => (version.as_str(), false),
        _ => bail!("usage: `cargo xtask release X.Y.Z [--no-checks]`, got {args:?}"),
    };
    let new = Version::parse(version)?;
    let root = workspace_root();

    // Read and change everything in memory first, so that a bad changelog or
    // manifest leaves every file as it was.
    let manifest_path = root.join("Cargo.toml");
    let manifest = read(&manifest_path)?;
    let (manifest, old) = bump_manifest(&manifest, &new)?;
    ensure!(
        new > old,
        "version {new} is not newer than the current version {old}: give a higher version"
    );
    let changelog_path = root.join("CHANGELOG.md");
    let changelog = read(&changelog_path)?;
    let repository = repository_url(&manifest)?;
    let today = today()?;
    let changelog = release_changelog(&changelog, &old, &new, &today, repository.as_deref())?;
    let mut members = Vec::new();
    for path in member_manifests(&root)? {
        if let Some(bumped) = bump_member(&read(&path)?, &new)
            .with_context(|| format!("failed to bump {:?}", path.display()))?
        {
            members.push((path, bumped));
        }
    }

    write(&manifest_path, &manifest)?;
    write(&changelog_path, &changelog)?;
    for (path, bumped) in &members {
        write(path, bumped)?;
    }
    crate::announce(&[&format!(
        "bumped {old} -> {new} in Cargo.toml, CHANGELOG.md and {} member manifest(s) with a version of their own",
        members.len()
    )]);

    // The lock file records the workspace crates' versions too.
    crate::run(&["cargo", "update", "--workspace", "--offline"])?;

    if run_checks {
        crate::ci(&[]).with_context(|| {
            format!(
                "the checks failed after the bump to {new}: fix them, or undo the bump with git"
            )
        })?;
    }
    crate::announce(&[&format!(
        "release {new} is ready: review `git diff`, commit, and tag it v{new}"
    )]);
    Ok(())
}

/// A semantic version `MAJOR.MINOR.PATCH` with an optional pre-release part.
///
/// Ordering follows Semantic Versioning 2.0.0 section 11 for the cases a
/// release uses: a version with a pre-release part sorts before the same
/// version without one, and pre-release parts compare as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    core: [u64; 3],
    pre: Option<String>,
}

impl Version {
    /// Parses `X.Y.Z` or `X.Y.Z-PRE`; build metadata (`+...`) is rejected.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let invalid =
            || anyhow::anyhow!("invalid version {text:?}: give MAJOR.MINOR.PATCH, such as 1.2.0");
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };

        let mut parts = [0_u64; 3];
        let mut fields = core.split('.');
        for part in &mut parts {
            let field = fields.next().ok_or_else(invalid)?;
            let leading_zero = field.len() > 1 && field.starts_with('0');
            if field.is_empty() || leading_zero || !field.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            *part = field.parse().map_err(|_| invalid())?;
        }
        if fields.next().is_some() {
            return Err(invalid());
        }

        if let Some(pre) = pre {
            let valid = pre.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !valid {
                return Err(invalid());
            }
        }
        Ok(Self {
            core: parts,
            pre: pre.map(str::to_owned),
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;

        self.core
            .cmp(&other.core)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [major, minor, patch] = self.core;
        write!(f, "{major}.{minor}.{patch}")?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// Sets `[workspace.package] version` and the `version` of every workspace
/// dependency that has a `path`, and returns the new manifest and the old
/// version.
///
/// Member crates inherit the version with `version.workspace = true`, so the
/// root manifest is the only file to change.
fn bump_manifest(manifest: &str, new: &Version) -> anyhow::Result<(String, Version)> {
    let mut document: toml_edit::DocumentMut = manifest
        .parse()
        .context("failed to parse the root Cargo.toml")?;

    let package = document
        .get_mut("workspace")
        .and_then(|workspace| workspace.get_mut("package"))
        .and_then(toml_edit::Item::as_table_like_mut)
        .context("the root Cargo.toml has no [workspace.package] table: add one with `version`")?;
    let old = package
        .get("version")
        .and_then(toml_edit::Item::as_str)
        .context("[workspace.package] has no `version` string: add `version = \"0.1.0\"`")?;
    let old = Version::parse(old)?;
    set_version(package, new);

    // Our own crates appear in [workspace.dependencies] with a path and a
    // version; the version must follow, or dependents would not resolve.
    if let Some(dependencies) = document
        .get_mut("workspace")
        .and_then(|workspace| workspace.get_mut("dependencies"))
        .and_then(toml_edit::Item::as_table_like_mut)
    {
        for (_, dependency) in dependencies.iter_mut() {
            let Some(table) = dependency.as_table_like_mut() else {
                continue;
            };
            if table.contains_key("path") && table.contains_key("version") {
                set_version(table, new);
            }
        }
    }
    Ok((document.to_string(), old))
}

/// Sets the `version` key of `table`, keeping the comments and spacing around it.
fn set_version(table: &mut dyn toml_edit::TableLike, new: &Version) {
    let mut version = toml_edit::Value::from(new.to_string());
    if let Some(old_value) = table.get("version").and_then(toml_edit::Item::as_value) {
        *version.decor_mut() = old_value.decor().clone();
    }
    table.insert("version", toml_edit::Item::Value(version));
}

/// Returns the manifests of the workspace members, from `cargo metadata`.
fn member_manifests(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("failed to run `cargo metadata`")?;
    ensure!(
        output.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("invalid `cargo metadata` output")?;
    let packages = metadata["packages"]
        .as_array()
        .context("no `packages` in the `cargo metadata` output")?;
    Ok(packages
        .iter()
        .filter_map(|package| package["manifest_path"].as_str())
        .map(PathBuf::from)
        .collect())
}

/// Sets `[package] version` of a member manifest that has a version of its
/// own. Returns `None` when the version is inherited with
/// `version.workspace = true`, or when the manifest has no `[package]`.
fn bump_member(manifest: &str, new: &Version) -> anyhow::Result<Option<String>> {
    let mut document: toml_edit::DocumentMut = manifest.parse().context("invalid TOML")?;
    let Some(package) = document
        .get_mut("package")
        .and_then(toml_edit::Item::as_table_like_mut)
    else {
        return Ok(None);
    };
    if package
        .get("version")
        .and_then(toml_edit::Item::as_str)
        .is_none()
    {
        return Ok(None);
    }
    set_version(package, new);
    Ok(Some(document.to_string()))
}

/// Returns `[workspace.package] repository`, if set.
fn repository_url(manifest: &str) -> anyhow::Result<Option<String>> {
    let document: toml_edit::DocumentMut = manifest
        .parse()
        .context("failed to parse the root Cargo.toml")?;
    Ok(document
        .get("workspace")
        .and_then(|workspace| workspace.get("package"))
        .and_then(|package| package.get("repository"))
        .and_then(toml_edit::Item::as_str)
        .map(|url| url.trim_end_matches('/').to_owned()))
}

/// Moves the changelog's Unreleased entries under a new `## [X.Y.Z] - DATE`
/// heading and leaves an empty Unreleased section above it.
///
/// When the changelog ends with Keep a Changelog link references, the
/// `[Unreleased]` link is pointed at the new tag and a link for the new
/// version is added.
fn release_changelog(
    changelog: &str,
    old: &Version,
    new: &Version,
    date: &str,
    repository: Option<&str>,
) -> anyhow::Result<String> {
    let start = changelog.find(UNRELEASED_HEADING).with_context(|| {
        format!("CHANGELOG.md has no {UNRELEASED_HEADING:?} heading: add one above the changes")
    })?;
    let body_start = start + UNRELEASED_HEADING.len();
    let body_end = changelog[body_start..]
        .find("\n## ")
        .map_or(changelog.len(), |offset| body_start + offset + 1);
    let body = &changelog[body_start..body_end];

    // A link reference block at the end belongs to the whole file, not to the
    // last section.
    let (entries, links) = split_link_references(body);
    ensure!(
        !entries.trim().is_empty(),
        "the Unreleased section of CHANGELOG.md is empty: list the changes of {new} first"
    );
    let heading = format!("## [{new}] - {date}");
    ensure!(
        !changelog.contains(&format!("## [{new}]")),
        "CHANGELOG.md already has a section for {new}: give another version"
    );

    let mut out = String::with_capacity(changelog.len() + 128);
    out.push_str(&changelog[..body_start]);
    out.push_str("\n\n");
    out.push_str(&heading);
    out.push_str("\n\n");
    out.push_str(entries.trim_matches('\n'));
    out.push('\n');
    if !links.is_empty() || body_end < changelog.len() {
        out.push('\n');
    }
    out.push_str(links);
    out.push_str(&changelog[body_end..]);

    Ok(match repository {
        Some(repository) => update_link_references(&out, old, new, repository),
        None => out,
    })
}

/// Splits a section body into its entries and a trailing block of link
/// reference definitions (lines such as `[1.0.0]: https://...`).
fn split_link_references(body: &str) -> (&str, &str) {
    let trimmed = body.trim_end_matches('\n');
    let mut split = trimmed.len();
    for line in trimmed.rsplit('\n') {
        let is_link = line.starts_with('[') && line.contains("]: ");
        if !is_link {
            break;
        }
        split -= line.len() + 1;
    }
    if split >= trimmed.len() {
        return (body, "");
    }
    let split = split + 1;
    (&body[..split], &body[split..])
}

/// Points the `[Unreleased]` link at `vNEW...HEAD` and adds a `[NEW]` link,
/// when the changelog has an `[Unreleased]` link reference.
fn update_link_references(
    changelog: &str,
    old: &Version,
    new: &Version,
    repository: &str,
) -> String {
    let mut out = String::with_capacity(changelog.len() + 128);
    for line in changelog.split_inclusive('\n') {
        if line.to_ascii_lowercase().starts_with("[unreleased]: ") {
            let _ = writeln!(out, "[Unreleased]: {repository}/compare/v{new}...HEAD");
            let _ = writeln!(out, "[{new}]: {repository}/compare/v{old}...v{new}");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Returns today's date in UTC as `YYYY-MM-DD`.
fn today() -> anyhow::Result<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::now_utc()
        .format(format)
        .context("failed to format today's date")
}

/// Returns the workspace root: the parent of this crate's folder.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// Returns Cargo's target folder: `CARGO_TARGET_DIR` when set, else `target/`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {:?}", path.display()))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {:?}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn version_parse_table() {
        let cases: &[(&str, bool)] = &[
            ("0.1.0", true),
            ("1.20.300", true),
            ("1.0.0-rc.1", true),
            ("1.0", false),
            ("1.0.0.0", false),
            ("01.0.0", false),
            ("1.0.x", false),
            ("v1.0.0", false),
            ("1.0.0-", false),
            ("1.0.0+build", false),
            ("", false),
        ];
        for (text, valid) in cases {
            assert_eq!(Version::parse(text).is_ok(), *valid, "{text:?}");
        }
    }

    #[test]
    fn version_ordering() {
        assert!(version("0.2.0") > version("0.1.9"));
        assert!(version("1.0.0") > version("1.0.0-rc.1"));
        assert!(version("1.0.0-rc.2") > version("1.0.0-rc.1"));
        assert!(version("0.10.0") > version("0.9.0"));
        assert_eq!(version("1.2.3").to_string(), "1.2.3");
        assert_eq!(version("1.2.3-beta").to_string(), "1.2.3-beta");
    }

    #[test]
    fn bump_manifest_sets_every_version() {
        let manifest = r#"[workspace]
members = ["crates/*"]

[workspace.package]
version = "0.1.0" # the release version
edition = "2021"

[workspace.dependencies]
authcfg-model = { path = "crates/authcfg-model", version = "0.1.0" }
serde = { version = "1", features = ["derive"] }
"#;
        let (bumped, old) = bump_manifest(manifest, &version("0.2.0")).unwrap();

        assert_eq!(old, version("0.1.0"));
        assert!(
            bumped.contains("version = \"0.2.0\" # the release version"),
            "{bumped}"
        );
        assert!(
            bumped.contains(
                r#"authcfg-model = { path = "crates/authcfg-model", version = "0.2.0" }"#
            ),
            "{bumped}"
        );
        assert!(
            bumped.contains(r#"serde = { version = "1", features = ["derive"] }"#),
            "{bumped}"
        );
    }

    #[test]
    fn bump_member_only_own_versions() {
        let own = "[package]\nname = \"a\"\nversion = \"0.1.0\"\n";
        let inherited = "[package]\nname = \"b\"\nversion.workspace = true\n";

        assert_eq!(
            bump_member(own, &version("0.2.0")).unwrap().as_deref(),
            Some("[package]\nname = \"a\"\nversion = \"0.2.0\"\n")
        );
        assert_eq!(bump_member(inherited, &version("0.2.0")).unwrap(), None);
        assert_eq!(
            bump_member("[workspace]\n", &version("0.2.0")).unwrap(),
            None
        );
    }

    #[test]
    fn changelog_moves_unreleased_entries() {
        let changelog = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n### Added\n\n- A thing.\n\n## [0.1.0] - 2026-01-01\n\n- First.\n";
        let out = release_changelog(
            changelog,
            &version("0.1.0"),
            &version("0.2.0"),
            "2026-12-04",
            None,
        )
        .unwrap();

        assert_eq!(
            out,
            "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n## [0.2.0] - 2026-12-04\n\n### Added\n\n- A thing.\n\n## [0.1.0] - 2026-01-01\n\n- First.\n"
        );
    }

    #[test]
    fn changelog_last_section_and_links() {
        let changelog = "# Changelog\n\n## [Unreleased]\n\n- A thing.\n\n[Unreleased]: https://example.test/r/compare/v0.1.0...HEAD\n";
        let out = release_changelog(
            changelog,
            &version("0.1.0"),
            &version("0.2.0"),
            "2026-12-04",
            Some("https://example.test/r"),
        )
        .unwrap();

        assert_eq!(
            out,
            "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2026-12-04\n\n- A thing.\n\n[Unreleased]: https://example.test/r/compare/v0.2.0...HEAD\n[0.2.0]: https://example.test/r/compare/v0.1.0...v0.2.0\n"
        );
    }

    #[test]
    fn changelog_rejects_empty_unreleased() {
        let changelog = "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-01-01\n\n- First.\n";
        let error = release_changelog(
            changelog,
            &version("0.1.0"),
            &version("0.2.0"),
            "2026-12-04",
            None,
        )
        .unwrap_err();

        assert!(error.to_string().contains("is empty"), "{error}");
    }

    #[test]
    fn changelog_rejects_missing_heading() {
        let error = release_changelog(
            "# Changelog\n",
            &version("0.1.0"),
            &version("0.2.0"),
            "d",
            None,
        )
        .unwrap_err();

        assert!(
            error.to_string().contains("no \"## [Unreleased]\" heading"),
            "{error}"
        );
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
