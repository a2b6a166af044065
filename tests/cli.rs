//! The command line: flags, environment variables, configuration errors, subcommands, and the
//! README's flags table.

mod common;

use std::process::{Command, Output, Stdio};

use common::{Exporter, SAMPLE_FINGERPRINT, SAMPLE_TOKEN, binary, write_file};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("dir");
    Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_flags_print_one_line_and_exit_2() {
    for args in [
        vec!["--no-such-flag"],
        vec!["--webhook.timezone=Mars/Base"],
        vec!["--webhook.max-future-skew=soon"],
        vec!["--web.listen-address=nowhere"],
        vec!["--log.level=chatty"],
        vec!["--series.max=0"],
        vec!["--series.expire-after=1000000000000d"],
        vec!["--web.telemetry-path=/-/healthy"],
        vec![
            "--web.telemetry-path=/api/v1/admin/ids",
            "--web.enable-admin-api",
        ],
        vec!["--webhook.path=/{*rest}"],
        vec!["--webhook.path=/a/{x}"],
        vec!["--webhook.path=/"],
        vec!["--webhook.path=/metrics"],
    ] {
        let output = run(&args, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output).trim_end().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"));
    }
}

#[test]
fn bad_names_file_prints_one_line_naming_it_and_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    let names = write_file(
        dir.path(),
        "names.toml",
        &format!("[tokens]\n\"{SAMPLE_TOKEN}\" = 7\n"),
    );
    let output = run(
        &[
            "--web.listen-address=127.0.0.1:0",
            &format!("--names.file={}", names.display()),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let last = stderr(&output)
        .trim_end()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    assert!(
        last.starts_with("error: names file") && last.contains("names.toml"),
        "{last}"
    );
    assert!(
        !stderr(&output).contains(SAMPLE_TOKEN),
        "token leaked: {}",
        stderr(&output)
    );

    let missing = run(
        &[
            "--web.listen-address=127.0.0.1:0",
            "--names.file=/nonexistent.toml",
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn bad_secret_or_web_config_files_exit_2() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = write_file(dir.path(), "secret", "short");
    let web = write_file(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: nope.pem\n",
    );
    for flag in [
        format!("--webhook.secret-file={}", secret.display()),
        format!("--web.config.file={}", web.display()),
    ] {
        let output = run(&["--web.listen-address=127.0.0.1:0", &flag], &[]);
        assert_eq!(output.status.code(), Some(2), "{flag}: {}", stderr(&output));
        assert!(
            !stderr(&output).contains("short\n"),
            "secret content printed"
        );
    }
}

#[test]
fn flags_can_be_set_from_the_environment() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("dir"));
    let path = dir.path().join("state-from-env.db").display().to_string();
    let env = [
        ("LOCALTONET_EXPORTER_STORAGE_PATH", path.as_str()),
        ("LOCALTONET_EXPORTER_WEBHOOK_TIMEZONE", "+03:00"),
        ("LOCALTONET_EXPORTER_WEB_ENABLE_ADMIN_API", "true"),
    ];
    let exporter = Exporter::try_start_with_env(dir, &[], &env).expect("starts");
    exporter.send(common::SAMPLE);
    let labels = r#"type="token",id="3b8f0e6747ce707b""#;
    let value = exporter
        .scrape()
        .value("localtonet_last_change_timestamp_seconds", labels);
    assert_eq!(
        value,
        Some(1714383317.15458),
        "timezone from the environment"
    );
    assert!(
        std::path::Path::new(&path).exists(),
        "storage path from the environment"
    );
    assert_eq!(
        exporter.get("/api/v1/admin/ids").status,
        200,
        "boolean flag from the environment"
    );
}

#[test]
fn fingerprint_subcommand_prints_the_label_value_from_argument_or_stdin() {
    let output = run(&["fingerprint", SAMPLE_TOKEN], &[]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{SAMPLE_FINGERPRINT}\n")
    );

    let mut child = Command::new(binary())
        .arg("fingerprint")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{SAMPLE_TOKEN}\n").as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{SAMPLE_FINGERPRINT}\n")
    );
}

#[test]
fn send_subcommand_posts_an_event_to_a_running_exporter() {
    let exporter = Exporter::start(&[]);
    let url = format!("{}?group=cli", exporter.url("/webhook"));
    let output = run(
        &[
            "send",
            "--url",
            &url,
            "--type",
            "tunnel",
            "--id",
            "cli-test",
            "--status",
            "disconnected",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("200 "));
    let scrape = exporter.scrape();
    let labels = r#"type="tunnel",id="cli-test",group="cli""#;
    assert_eq!(scrape.value("localtonet_connected", labels), Some(0.0));

    let refused = run(
        &[
            "send",
            "--url",
            &url,
            "--id",
            "bad id",
            "--status",
            "connected",
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn readme_flags_table_lists_every_flag_with_its_env_variable_and_default() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let help = String::from_utf8_lossy(&run(&["--help"], &[]).stdout).into_owned();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '=']).next())
        .filter(|f| !matches!(*f, "help" | "version"))
        .collect();
    assert!(flags.len() >= 20, "{help}");
    for flag in flags {
        let env = format!(
            "LOCALTONET_EXPORTER_{}",
            flag.to_uppercase().replace(['.', '-'], "_")
        );
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `--{flag}`")))
            .unwrap_or_else(|| panic!("README flags table has no row for --{flag}"));
        assert!(
            row.contains(&format!("`{env}`")),
            "row for --{flag} lacks {env}: {row}"
        );
        let default = help
            .split(&format!("--{flag}"))
            .nth(1)
            .and_then(|rest| rest.split("\n      --").next())
            .and_then(|text| text.split("[default: ").nth(1))
            .and_then(|d| d.split(']').next());
        if let Some(default) = default {
            assert!(
                row.contains(&format!("`{default}`")),
                "row for --{flag} lacks `{default}`: {row}"
            );
        }
    }
}
