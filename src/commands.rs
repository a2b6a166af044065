//! The subcommands: `fingerprint` and `send`.

use std::io::Read;

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::cli::{FingerprintArgs, SendArgs, SendKind, SendStatus};
use crate::fingerprint;

/// Prints the fingerprint of a token given as argument or on standard input.
pub fn fingerprint(args: FingerprintArgs) -> Result<(), String> {
    let token = match args.token {
        Some(token) => token,
        None => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
            input
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("no token given (pass it as an argument or on standard input)".into());
    }
    println!("{}", fingerprint::of(token));
    Ok(())
}

/// Posts one event to a running exporter and prints its answer.
pub fn send(args: SendArgs) -> Result<(), String> {
    let at = args
        .at
        .unwrap_or_else(|| Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
    let body = json!({
        "Id": args.id,
        "ActionDate": at,
        "Type": match args.kind { SendKind::Token => "Token", SendKind::Tunnel => "Tunnel" },
        "Status": match args.status {
            SendStatus::Connected => "Connected",
            SendStatus::Disconnected => "Disconnected",
        },
    })
    .to_string();

    let agent = agent(args.ca_file.as_deref())?;
    let mut request = agent
        .post(&args.url)
        .header("Content-Type", "application/json");
    if let Some(path) = &args.secret_file {
        let secret = std::fs::read_to_string(path)
            .map_err(|e| format!("webhook secret file {}: {e}", path.display()))?;
        request = request.header("Authorization", &format!("Bearer {}", secret.trim()));
    }
    let mut response = request
        .send(body.as_bytes())
        .map_err(|e| format!("sending failed: {e}"))?;
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    println!("{} {}", status.as_u16(), text.trim());
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the exporter answered {status}"))
    }
}

fn agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(path) = ca_file {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(format!("{}: no certificate found", path.display()));
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&certs))
            .build();
        config = config.tls_config(tls);
    }
    Ok(config.build().into())
}
