//! Splitting one CSV line into its fields (RFC 4180): fields separated by
//! a delimiter, a field in double quotes may hold the delimiter, line
//! breaks and doubled quotes (`""` for `"`).

/// Calls `field` with each field of `line` in order: `None` for an empty
/// unquoted field, the text otherwise (quotes removed, `""` made `"`). A
/// trailing line break is not part of the last field. Fails on a quote
/// that opens and never closes or text after a closing quote, or with the
/// first error `field` returns.
pub fn fields(
    line: &str,
    delimiter: u8,
    mut field: impl FnMut(Option<&str>) -> Result<(), String>,
) -> Result<(), String> {
    let line = line
        .strip_suffix("\r\n")
        .or_else(|| line.strip_suffix('\n'))
        .unwrap_or(line);
    let delimiter = char::from(delimiter);
    let mut unquoted = String::new();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            // A quoted field: up to the quote not doubled.
            unquoted.clear();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            unquoted.push('"');
                            chars.next();
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, c)) => unquoted.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            };
            field(Some(&unquoted))?;
            rest = &quoted[end..];
            match rest.chars().next() {
                None => return Ok(()),
                Some(c) if c == delimiter => rest = &rest[c.len_utf8()..],
                Some(_) => {
                    return Err(format!(
                        "text after a closing quote: {:?}",
                        rest.chars().take(20).collect::<String>()
                    ))
                }
            }
        } else {
            let end = rest.find(delimiter).unwrap_or(rest.len());
            let text = &rest[..end];
            field((!text.is_empty()).then_some(text))?;
            if end == rest.len() {
                return Ok(());
            }
            rest = &rest[end + delimiter.len_utf8()..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<Option<String>>, String> {
        let mut out = Vec::new();
        fields(line, b',', |f| {
            out.push(f.map(String::from));
            Ok(())
        })?;
        Ok(out)
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn lines_split_as_rfc_4180_says() {
        assert_eq!(split("a,b,c").unwrap(), some(&["a", "b", "c"]));
        assert_eq!(
            split("a,,c\n").unwrap(),
            vec![Some("a".into()), None, Some("c".into())]
        );
        assert_eq!(
            split("\"a,b\",\"say \"\"hi\"\"\"\r\n").unwrap(),
            some(&["a,b", "say \"hi\""])
        );
        assert_eq!(
            split("\"\",x").unwrap(),
            some(&["", "x"]),
            "quoted empty is ''"
        );
        assert_eq!(split("\"two\nlines\"").unwrap(), some(&["two\nlines"]));
        assert_eq!(split("é,ü").unwrap(), some(&["é", "ü"]));
        assert_eq!(split("").unwrap(), vec![None]);
        assert_eq!(split("a,").unwrap(), vec![Some("a".into()), None]);
        let mut tabs = Vec::new();
        fields("a\tb c", b'\t', |f| {
            tabs.push(f.map(String::from));
            Ok(())
        })
        .unwrap();
        assert_eq!(tabs, some(&["a", "b c"]));
    }

    #[test]
    fn malformed_lines_say_why() {
        assert!(split("\"open").unwrap_err().contains("not closed"));
        assert!(split("\"a\"b,c")
            .unwrap_err()
            .contains("text after a closing quote"));
    }
}
