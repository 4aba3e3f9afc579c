//! How the CLI prints: a human table, or the same data as JSON or YAML for
//! scripts (`-o json|yaml|table`, `--json` for `-o json`). Errors follow the
//! same choice on stderr.

use serde_json::Value;

/// The output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document per result, on one line.
    Json,
    /// One YAML document per result.
    Yaml,
}

impl Output {
    /// Whether the command prints data for programs rather than a table.
    pub fn structured(self) -> bool {
        self != Output::Table
    }

    /// `value` in this format (`Table` prints it as JSON too: commands
    /// print their own tables before reaching here).
    pub fn render(self, value: &Value) -> String {
        match self {
            Output::Table | Output::Json => value.to_string(),
            // A JSON value always has a YAML form.
            Output::Yaml => {
                let text = serde_yaml_ng::to_string(value).unwrap_or_default();
                format!("---\n{}", text.trim_end())
            }
        }
    }

    /// Prints `value` on stdout in this format.
    pub fn print(self, value: &Value) {
        println!("{}", self.render(value));
    }
}

/// Which side of its column a cell sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table whose columns are as wide as their widest cell, so long values
/// (Kubernetes DNS names, job names) never run into the next column.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table's lines, columns two spaces apart, without trailing
    /// spaces.
    pub fn lines(&self) -> Vec<String> {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, ((_, align), cell)) in self.columns.iter().zip(cells).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let w = widths[i];
                match align {
                    Align::Left => out.push_str(&format!("{cell:<w$}")),
                    Align::Right => out.push_str(&format!("{cell:>w$}")),
                }
            }
            out.trim_end().to_string()
        };
        let mut out = vec![line(&mut self.columns.iter().map(|(h, _)| *h))];
        for row in &self.rows {
            let mut cells = row.iter().map(String::as_str).chain(std::iter::repeat(""));
            out.push(line(&mut cells));
        }
        out
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        for l in self.lines() {
            println!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Table::new(&[("EXECUTOR", Align::Left), ("EPOCH", Align::Right)]);
        let long = "weir-executor-2.weir-executor.streaming.svc.cluster.local:7100";
        t.row(vec![long.into(), "7".into()]);
        t.row(vec!["e1".into(), "12".into()]);
        let lines = t.lines();
        assert_eq!(
            lines[0],
            format!("EXECUTOR{}  EPOCH", " ".repeat(long.len() - 8))
        );
        assert_eq!(lines[1], format!("{long}      7"));
        assert_eq!(lines[2], format!("e1{}     12", " ".repeat(long.len() - 2)));
    }

    #[test]
    fn json_and_yaml_carry_the_same_value() {
        let v = json!({"job": "j", "batches": [1, 2], "error": null});
        let json = Output::Json.render(&v);
        assert!(!json.contains('\n'), "{json}");
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), v);
        let yaml = Output::Yaml.render(&v);
        assert!(yaml.starts_with("---\n"), "{yaml}");
        let back: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, v);
    }
}
