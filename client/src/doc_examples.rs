//! The docs' runnable examples still run: every complete job spec in a
//! YAML block of README.md and docs/*.md validates and type-checks, and
//! every `weir`, `weir-driver` and `weir-executor` command in a shell
//! block parses with today's flags.

use super::{check_plan, Cli};
use clap::Parser;
use std::path::{Path, PathBuf};

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The fenced code blocks of a page: (language, first line number, text).
fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    open = Some((lang.trim().to_string(), i + 2, String::new()));
                }
            }
            Some(block) if trimmed.starts_with("```") => out.push(block),
            Some((lang, at, mut body)) => {
                body.push_str(line);
                body.push('\n');
                open = Some((lang, at, body));
            }
        }
    }
    out
}

/// The commands of a shell block that run one of Weir's binaries: lines
/// joined at trailing backslashes, prompts, comments and what follows a
/// pipe, `&&` or a redirection cut off. Synopses (`[--flag ...]`) are not
/// commands.
fn commands(block: &str) -> Vec<Vec<String>> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_suffix('\\') {
            current.push_str(rest);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        joined.push(std::mem::take(&mut current));
    }
    joined
        .iter()
        .map(|l| l.trim_start_matches("$ ").trim())
        .filter(|l| {
            ["weir ", "weir-driver ", "weir-executor "]
                .iter()
                .any(|b| l.starts_with(b))
                && !l.contains("[--")
        })
        .map(|l| {
            let end = ["|", "&&", ">", "#", "&"]
                .iter()
                .filter_map(|s| l.find(s))
                .min()
                .unwrap_or(l.len());
            words(&l[..end])
        })
        .collect()
}

/// Splits a command line into words, honouring single and double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether a YAML block is a whole job spec: not a fragment of one, nor
/// an outline with `...` in place of values.
fn is_spec(yaml: &str) -> bool {
    let top = |key: &str| yaml.lines().any(|l| l.starts_with(key));
    top("name:") && top("source:") && top("sink:") && !yaml.contains("...")
}

#[test]
fn the_docs_examples_validate_and_parse() {
    let mut failures = Vec::new();
    let (mut specs, mut commands_seen) = (0, 0);
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a readable page");
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        for (lang, line, body) in blocks(&text) {
            match lang.as_str() {
                "yaml" if is_spec(&body) => {
                    specs += 1;
                    let checked = weir_proto::spec::parse_spec(&body)
                        .map_err(|e| e.to_string())
                        .and_then(|spec| check_plan(&spec).map_err(|e| e.to_string()));
                    if let Err(e) = checked {
                        failures.push(format!("{name}:{line}: spec: {e}"));
                    }
                }
                "sh" | "bash" | "console" | "shell" | "" => {
                    for args in commands(&body) {
                        commands_seen += 1;
                        let parsed = match args[0].as_str() {
                            "weir" => Cli::try_parse_from(&args).map(|_| ()),
                            "weir-driver" => {
                                weir_driver::config::DriverArgs::try_parse_from(&args).map(|_| ())
                            }
                            _ => weir_executor::config::Args::try_parse_from(&args).map(|_| ()),
                        };
                        if let Err(e) = parsed {
                            let first = e.to_string().lines().next().unwrap_or("").to_string();
                            failures.push(format!("{name}:{line}: `{}`: {first}", args.join(" ")));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "docs examples that no longer work:\n{}",
        failures.join("\n")
    );
    // The walk found the examples (a broken block parser finds none).
    assert!(specs >= 2, "{specs} specs");
    assert!(commands_seen >= 30, "{commands_seen} commands");
    eprintln!("{specs} specs and {commands_seen} commands checked");
}

#[test]
fn commands_are_cut_where_the_shell_would() {
    let block = "$ weir submit job.yaml --from 0:1200   # comment\n\
                 weir-driver --id 3 \\\n  --listen 10.0.0.3:7070\n\
                 weir spec j | weir submit -\n\
                 weir local SPEC.yaml [--state-dir DIR]\n\
                 echo weir\n\
                 weir stop \"my job\" --wait && echo done\n";
    assert_eq!(
        commands(block),
        [
            vec!["weir", "submit", "job.yaml", "--from", "0:1200"],
            vec!["weir-driver", "--id", "3", "--listen", "10.0.0.3:7070"],
            vec!["weir", "spec", "j"],
            vec!["weir", "stop", "my job", "--wait"],
        ]
    );
}
