//! Statements over many rows at once. A batch of rows is cut into chunks of a few fixed sizes
//! (so that each statement comes in a few shapes, each prepared once per connection), and each
//! chunk is written by one statement with a `VALUES` list of numbered parameters: a batch costs
//! a hand-off to the database per chunk, not per row.

use std::ops::Range;

/// The largest chunk; the others are the powers of two below it.
const LARGEST: usize = 64;

/// `0..n` cut into chunks of powers of two, largest first (100 → 64, 32, 4).
pub(super) fn chunks(n: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let left = n - start;
        let size = if left >= LARGEST {
            LARGEST
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        out.push(start..start + size);
        start += size;
    }
    out
}

/// `($1, $2), ($3, $4)`: `rows` groups of `columns` parameters, numbered from `first`.
pub(super) fn values(rows: usize, columns: usize, first: usize) -> String {
    let mut text = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        text.push_str(&list(columns, first + r * columns));
        text.push(')');
    }
    text
}

/// `$1, $2, $3`: `n` parameters numbered from `first`.
pub(super) fn list(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CASE id WHEN $1 THEN $5 WHEN $2 THEN $6 … END`: the value of column `key`'s row `i` is
/// parameter `first_value + i`, its key parameter `first_key + i`, for `rows` rows; it sets a
/// different value on each row of one `UPDATE … WHERE key IN (…)`.
pub(super) fn case_of(key: &str, rows: usize, first_key: usize, first_value: usize) -> String {
    let mut text = format!("CASE {key}");
    for i in 0..rows {
        text.push_str(&format!(
            " WHEN ${} THEN ${}",
            first_key + i,
            first_value + i
        ));
    }
    text.push_str(" END");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_in_powers_of_two_and_cover_every_row_once() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1), vec![0..1]);
        assert_eq!(chunks(100), vec![0..64, 64..96, 96..100]);
        assert_eq!(chunks(130), vec![0..64, 64..128, 128..130]);
        for n in 0..300 {
            let cut = chunks(n);
            assert_eq!(cut.iter().map(|c| c.len()).sum::<usize>(), n);
            assert!(
                cut.iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= LARGEST)
            );
            assert!(cut.windows(2).all(|w| w[0].end == w[1].start));
        }
    }

    #[test]
    fn values_number_their_parameters_in_order() {
        assert_eq!(values(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 2, 5), "($5, $6)");
        assert_eq!(list(3, 2), "$2, $3, $4");
        assert_eq!(
            case_of("id", 2, 1, 3),
            "CASE id WHEN $1 THEN $3 WHEN $2 THEN $4 END"
        );
    }
}
