//! `--segment I/N`: one of N generator processes, each running an equal slice of one
//! profile against one shared target, whose reports `paytool report merge` adds up. The
//! open model deals arrival i to segment i mod N, so the slices together keep the whole
//! schedule; the closed model deals users out.

/// Most segments of one run.
pub const SEGMENTS_MAX: u32 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// From 1.
    pub index: u32,
    pub of: u32,
}

impl Segment {
    /// "2/3".
    pub fn parse(text: &str) -> Result<Segment, String> {
        let bad = || format!("{text:?}: write I/N, e.g. 2/3 (the 2nd of 3 equal slices)");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let (index, of) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if of == 0 || of > SEGMENTS_MAX || index == 0 || index > of {
            return Err(format!(
                "{text:?}: I must be 1 to N, and N 1 to {SEGMENTS_MAX}"
            ));
        }
        Ok(Segment { index, of })
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.of)
    }

    /// This segment's share of `total` things dealt out in turn (arrival i goes to the
    /// segment i mod N, from 0).
    pub fn share(&self, total: u64) -> u64 {
        let (first, n) = ((self.index - 1) as u64, self.of as u64);
        if first >= total {
            0
        } else {
            (total - first).div_ceil(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_whole() {
        for total in [0, 1, 2, 7, 100, 1001] {
            for n in 1..=5 {
                let sum: u64 = (1..=n)
                    .map(|i| Segment { index: i, of: n }.share(total))
                    .sum();
                assert_eq!(sum, total, "{total} over {n}");
            }
        }
        assert_eq!(Segment::parse("2/3"), Ok(Segment { index: 2, of: 3 }));
        for bad in ["0/3", "4/3", "1/0", "x", "1/2/3"] {
            assert!(Segment::parse(bad).is_err(), "{bad}");
        }
    }
}
