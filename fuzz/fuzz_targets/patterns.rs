//! Policy patterns (`*`, `**`): the linear-time matcher agrees with a reference matcher that is
//! the plain recursive definition, memoized so that it too finishes on star-heavy inputs.
//! Input: `pattern\ntext`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::auth::pattern;

/// Bounds keep the reference's `|pattern| × |text|` table small.
const MAX_PATTERN: usize = 64;
const MAX_TEXT: usize = 512;

/// The definition, read off the module doc: `**` matches anything, `*` any run without `/` or
/// `:`, every other byte itself (`**` read greedily from the left).
fn reference(p: &[u8], t: &[u8], memo: &mut Vec<Vec<Option<bool>>>, i: usize, j: usize) -> bool {
    if let Some(known) = memo[i][j] {
        return known;
    }
    let result = match &p[i..] {
        [] => j == t.len(),
        [b'*', b'*', ..] => (j..=t.len()).any(|k| reference(p, t, memo, i + 2, k)),
        [b'*', ..] => {
            let mut k = j;
            loop {
                if reference(p, t, memo, i + 1, k) {
                    break true;
                }
                if k == t.len() || t[k] == b'/' || t[k] == b':' {
                    break false;
                }
                k += 1;
            }
        }
        [c, ..] => t.get(j) == Some(c) && reference(p, t, memo, i + 1, j + 1),
    };
    memo[i][j] = Some(result);
    result
}

fuzz_target!(|input: &str| {
    let (p, t) = input.split_once('\n').unwrap_or((input, ""));
    if p.len() > MAX_PATTERN || t.len() > MAX_TEXT {
        return;
    }
    let mut memo = vec![vec![None; t.len() + 1]; p.len() + 1];
    let expected = reference(p.as_bytes(), t.as_bytes(), &mut memo, 0, 0);
    let (got, steps) = pattern::matches_counting(p, t);
    assert_eq!(got, expected, "pattern {p:?} text {t:?}");
    assert!(steps <= 2 * (p.len() + 1) * (t.len() + 1), "{steps} steps");
});
