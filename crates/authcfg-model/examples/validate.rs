//! Validates a data source definition given as JSON on the command line or
//! standard input, and prints every problem with its JSON pointer.
//!
//! ```text
//! cargo run -p authcfg-model --example validate -- '{"name": "crm", "auth": {"method": "bearer"}}'
//! ```

use std::io::Read;
use std::process::ExitCode;

use authcfg_model::{parse_json, CreateDataSource};

#[expect(
    clippy::print_stdout,
    reason = "the example reports on standard output"
)]
fn main() -> ExitCode {
    let input = match std::env::args().nth(1) {
        Some(argument) => argument,
        None => {
            let mut buffer = String::new();
            if let Err(error) = std::io::stdin().read_to_string(&mut buffer) {
                println!("failed to read standard input: {error}");
                return ExitCode::FAILURE;
            }
            buffer
        }
    };

    let result = parse_json::<CreateDataSource>(input.as_bytes())
        .and_then(|request| request.validate().map(|()| request));
    match result {
        Ok(request) => {
            println!(
                "valid: data source {:?} with method {}",
                request.name, request.auth.method
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors.errors() {
                println!("{}: {}", error.pointer, error.detail);
            }
            ExitCode::FAILURE
        }
    }
}
