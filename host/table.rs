//! Plain-text tables for people, docker-style: left-aligned columns three spaces apart, no
//! trailing blanks.

use std::io::{self, Write};

/// Writes `head` and `rows`, each column as wide as its widest cell.
pub(crate) fn write<const N: usize>(
    out: &mut impl Write,
    head: &[String; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let widths: Vec<usize> = (0..N)
        .map(|c| {
            rows.iter()
                .chain([head])
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(head).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_lines_end_without_blanks() {
        let head = ["A".to_owned(), "LONG HEADER".to_owned()];
        let rows = [["wide cell".to_owned(), "x".to_owned()]];
        let mut out = Vec::new();
        super::write(&mut out, &head, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A           LONG HEADER\nwide cell   x\n"
        );
    }
}
