//! A real program's string arguments reach `--json` exactly and the terminal escaped: PHP 8.2
//! runs a script whose file name holds ESC, a newline and U+202E (right-to-left override), and
//! `php:request__startup` carries that name.

mod common;

use common::build::TempDir;
use common::php::php_binary;
use common::tracer::Tracer;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A file name that would recolour a terminal, break a line and reverse the text after it.
const NAME: &str = "a\x1b[31m\nb\u{202e}c.php";

/// Runs `php8.2 script` under `usdtop trace -p` (held by a shell until usdtop is attached);
/// returns what usdtop printed.
fn trace_php_script(php: &Path, script: &Path, extra: &[&str]) -> String {
    let mut shell = Command::new("sh")
        .args(["-c", "read go && exec \"$0\" \"$1\""])
        .arg(php)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sh");
    let pid = shell.id().to_string();
    let probe = format!("{}:php:request__startup", php.display());
    let mut args = vec!["trace", "-p", &pid, &probe];
    args.extend(extra);
    let tracer = Tracer::start_until(&args, "usdtop: tracing");
    shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(shell.wait().unwrap().success(), "php8.2 ran the script");
    // usdtop ends by itself once the traced process has exited.
    tracer.output()
}

fn script(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path().join(NAME);
    std::fs::write(&path, "<?php echo \"ok\\n\";\n").unwrap();
    path
}

fn php() -> std::path::PathBuf {
    php_binary()
}

#[test]
fn json_carries_a_php_file_name_with_escapes_byte_for_byte() {
    let php = php();
    let dir = TempDir::new("php-name");
    let script = script(&dir);
    let out = trace_php_script(&php, &script, &["--json"]);
    let lines = common::parse_json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    let file = lines[0]["args"]["file"].as_str().unwrap();
    assert_eq!(file.as_bytes(), script.as_os_str().as_encoded_bytes());
    // serde_json writes ESC and the newline as JSON escapes, never as raw bytes on the line.
    assert!(out.contains(r"a\u001b[31m\nb"), "{out}");
}

#[test]
fn text_output_shows_a_php_file_name_with_escapes_escaped() {
    let php = php();
    let dir = TempDir::new("php-name");
    let script = script(&dir);
    let out = trace_php_script(&php, &script, &[]);
    assert_eq!(
        out.lines().count(),
        1,
        "one line, the newline escaped: {out}"
    );
    let want = format!(
        "file=\"{}/a\\x1b[31m\\nb\\u{{202e}}c.php\"",
        dir.path().display()
    );
    assert!(out.contains(&want), "{out}");
    assert!(!out.contains('\x1b') && !out.contains('\u{202e}'), "{out}");
}
