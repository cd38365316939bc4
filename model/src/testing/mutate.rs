//! A seeded mutator for the bounded fuzz runs in the test command: it turns a real file of the
//! repository (a config, a model, an image) into a damaged one the way disks, editors and
//! hostile users do. Byte-level edits (flips, truncation, splices, runs of 0x00/0xFF) find
//! decoder bugs; text-level edits (numbers made huge, negative or NaN, lines dropped or
//! repeated, keys renamed) reach the validation behind a parser that still accepts the file.
use crate::rng::SplitMix64;

/// Values that break the arithmetic behind a parser: sizes that overflow, NaN, negatives.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1e39",
    "-1e39",
    "nan",
    "inf",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "65535",
    "1e-45",
    "\"\"",
    "[]",
];

/// Makes damaged variants of a seed file; the same seed gives the same variants.
pub struct Mutator {
    rng: SplitMix64,
}

impl Mutator {
    /// A mutator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: SplitMix64::new(seed),
        }
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.below(n.max(1) as u64) as usize
    }

    /// One to four byte-level edits of `input`.
    pub fn bytes(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.pick(4) {
            let len = out.len();
            let at = self.pick(len);
            match self.pick(7) {
                0 if len > 0 => out[at] ^= 1 << self.pick(8),
                1 if len > 0 => out[at] = self.rng.next_u64() as u8,
                2 => out.truncate(at),
                3 => {
                    let run = 1 + self.pick(16);
                    let v = if self.rng.chance(0.5) { 0xFF } else { 0x00 };
                    let end = (at + run).min(len);
                    out[at..end].fill(v);
                }
                4 => {
                    // Repeat a chunk of the file (a header or a record seen twice).
                    let end = (at + 1 + self.pick(64)).min(len);
                    let chunk = out[at..end].to_vec();
                    let to = self.pick(out.len());
                    out.splice(to..to, chunk);
                }
                5 => {
                    let end = (at + 1 + self.pick(64)).min(len);
                    out.drain(at..end);
                }
                _ => {
                    // A 32-bit little-endian length or size field set to something hostile.
                    let v: u32 = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x0100_0000][self.pick(5)];
                    let end = (at + 4).min(len);
                    out[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
            }
        }
        out
    }

    /// One to three text-level edits of `input` (a TOML or JSON file): a number replaced by a
    /// hostile value, a line dropped, repeated or cut short, or a key misspelled.
    pub fn text(&mut self, input: &str) -> String {
        let mut lines: Vec<String> = input.lines().map(str::to_string).collect();
        for _ in 0..1 + self.pick(3) {
            if lines.is_empty() {
                lines.push(NUMBERS[self.pick(NUMBERS.len())].to_string());
                continue;
            }
            let i = self.pick(lines.len());
            match self.pick(5) {
                0 | 1 => {
                    let line = &lines[i];
                    let digits: Vec<usize> = line
                        .char_indices()
                        .filter(|(_, c)| c.is_ascii_digit())
                        .map(|(k, _)| k)
                        .collect();
                    if let Some(&start) = digits.get(self.pick(digits.len())) {
                        let end = line[start..]
                            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e'))
                            .map_or(line.len(), |k| start + k);
                        let with = NUMBERS[self.pick(NUMBERS.len())];
                        lines[i] = format!("{}{with}{}", &line[..start], &line[end..]);
                    }
                }
                2 => {
                    lines.remove(i);
                }
                3 => {
                    let copy = lines[i].clone();
                    lines.insert(i, copy);
                }
                _ => {
                    let line = &lines[i];
                    let cut = line
                        .char_indices()
                        .map(|(k, _)| k)
                        .nth(self.pick(line.chars().count()))
                        .unwrap_or(0);
                    lines[i] = format!("{}x{}", &line[..cut], &line[cut..]);
                }
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }

    /// A text or a byte mutation, half and half; the result is valid UTF-8 either way.
    pub fn any_text(&mut self, input: &str) -> String {
        if self.rng.chance(0.5) {
            self.text(input)
        } else {
            String::from_utf8_lossy(&self.bytes(input.as_bytes())).into_owned()
        }
    }
}

/// Cases per fuzz target in the test command: `CONTEXTRAST_FUZZ_CASES` or `default` (longer
/// runs set it higher; the seed of each case is its number, so a failure names how to replay it).
pub fn fuzz_cases(default: u64) -> u64 {
    std::env::var("CONTEXTRAST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::Mutator;

    #[test]
    fn mutations_are_seeded_and_change_the_input() {
        let seed = "steps = 8000\nbatch = 8\n[model]\nwidth = 16\n";
        let a: Vec<String> = (0..50).map(|s| Mutator::new(s).text(seed)).collect();
        let b: Vec<String> = (0..50).map(|s| Mutator::new(s).text(seed)).collect();
        assert_eq!(a, b, "same seed, same case");
        assert!(a.iter().filter(|m| m.as_str() != seed).count() > 40);
        assert!(a.iter().any(|m| m.contains("1e39") || m.contains("nan")));
        let bytes = (0..50)
            .map(|s| Mutator::new(s).bytes(seed.as_bytes()))
            .filter(|m| m.as_slice() != seed.as_bytes())
            .count();
        assert!(bytes > 40, "{bytes} of 50 byte mutations changed the input");
        assert!(Mutator::new(1).bytes(&[]).len() < 100);
    }
}
