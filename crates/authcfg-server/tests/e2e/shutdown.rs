//! Shutdown on SIGTERM and SIGINT: in-flight requests finish, the process
//! exits cleanly, and the port is closed afterwards.

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::support::{bearer_datasource, Behaviour, Server, ServerOptions, TokenEndpoint};

#[test]
fn sigterm_finishes_in_flight_request() {
    finishes_in_flight_request("TERM");
}

#[test]
fn sigint_finishes_in_flight_request() {
    finishes_in_flight_request("INT");
}

/// Sends `signal` while a request waits on a slow token endpoint and checks
/// that the request still gets its header and the process exits cleanly.
fn finishes_in_flight_request(signal: &str) {
    let endpoint = TokenEndpoint::start("slow-token");
    endpoint.add_client("crm-client", "crm-secret");
    let mut server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Delay(Duration::from_secs(2)));

    // One request waits on the slow token endpoint while the signal arrives.
    let reply = thread::scope(|scope| {
        let in_flight = scope.spawn(|| server.authorize("crm-prod"));
        endpoint.wait_for_requests(1);
        server.signal(signal);
        in_flight.join().expect("the in-flight request panicked")
    });
    let status = server.wait_exit();

    assert_eq!(
        reply.status, 200,
        "the in-flight request failed: {}",
        reply.body
    );
    assert_eq!(reply.json()["value"], json!("Bearer slow-token-1"));
    assert!(
        status.success(),
        "the server exited with {status} after SIG{signal}"
    );
    let address = server.base_url().trim_start_matches("http://").to_owned();
    assert!(
        TcpStream::connect(address).is_err(),
        "the port still accepts connections"
    );
}

#[test]
fn idle_server_exits_cleanly_on_signals() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start();

        server.signal(signal);
        let status = server.wait_exit();

        assert!(status.success(), "SIG{signal} gave exit status {status}");
    }
}

#[test]
fn sigterm_bounds_hanging_request() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Hang);
    // The token request could wait an hour, so only the shutdown bound can
    // end the process in time.
    let mut server = Server::start_with(ServerOptions {
        extra_config: "shutdown_timeout_secs = 1\ntoken_request_timeout_secs = 3600\n".to_owned(),
        ..ServerOptions::default()
    });
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    thread::scope(|scope| {
        let base_url = server.base_url().to_owned();
        let admin = server.admin().to_owned();
        scope.spawn(move || {
            // The reply does not matter: the connection may be closed.
            let _ = reqwest::blocking::Client::new()
                .post(format!("{base_url}/v1/datasources/crm-prod/authorization"))
                .bearer_auth(admin)
                .send();
        });
        endpoint.wait_for_requests(1);
        server.signal("TERM");
        let _ = server.wait_exit();
    });

    let address = server.base_url().trim_start_matches("http://").to_owned();
    assert!(
        TcpStream::connect(address).is_err(),
        "the port still accepts connections"
    );
}

#[test]
fn second_sigint_stops_at_once() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Hang);
    // Neither the token request nor the graceful stop would end within the
    // test's wait, so only the second signal can stop the process.
    let mut server = Server::start_with(ServerOptions {
        extra_config: "shutdown_timeout_secs = 3600\ntoken_request_timeout_secs = 3600\n"
            .to_owned(),
        ..ServerOptions::default()
    });
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    let status = thread::scope(|scope| {
        let base_url = server.base_url().to_owned();
        let admin = server.admin().to_owned();
        scope.spawn(move || {
            // The reply does not matter: the connection is closed.
            let _ = reqwest::blocking::Client::new()
                .post(format!("{base_url}/v1/datasources/crm-prod/authorization"))
                .bearer_auth(admin)
                .send();
        });
        endpoint.wait_for_requests(1);
        server.signal("INT");
        wait_for_log(&server, "send the signal again");
        server.signal("INT");
        server.wait_exit()
    });

    assert!(
        status.success(),
        "the server exited with {status} after two SIGINTs"
    );
}

/// Waits until the server's log contains `text`, failing after 30 seconds.
fn wait_for_log(server: &Server, text: &str) {
    for _ in 0..600 {
        if server.log().contains(text) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("the log never contained {text:?}:\n{}", server.log());
}
