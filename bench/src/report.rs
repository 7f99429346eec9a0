//! Figures and how they are printed: a readable table or JSON lines.

use std::fmt::Write as _;

/// One measured number.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// Scenario that produced it (`store`, `caps`, …).
    pub(crate) scenario: &'static str,
    /// What was measured, e.g. `doc_writes`.
    pub(crate) name: String,
    /// The value.
    pub(crate) value: f64,
    /// Its unit, e.g. `docs/s`, `MB/s`, `ns`.
    pub(crate) unit: &'static str,
    /// The peer or ceiling that ran the same work in the same run, with its value.
    pub(crate) peer: Option<Peer>,
}

/// A peer or ceiling measured on the same work in the same run.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its name, e.g. `automerge+fjall ceiling`.
    pub(crate) name: String,
    /// Its value in the figure's unit.
    pub(crate) value: f64,
}

/// Whether more of a unit is better (rates) or less (times).
fn higher_is_better(unit: &str) -> bool {
    unit.ends_with("/s")
}

impl Figure {
    /// A figure with no peer.
    pub(crate) fn new(
        scenario: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            scenario,
            name: name.into(),
            value,
            unit,
            peer: None,
        }
    }

    /// The same figure compared with a peer's value on the same work.
    pub(crate) fn with_peer(mut self, name: impl Into<String>, value: f64) -> Self {
        self.peer = Some(Peer {
            name: name.into(),
            value,
        });
        self
    }

    /// Above 1 means kith did better: kith ÷ peer for rates, peer ÷ kith for times.
    pub(crate) fn ratio(&self) -> Option<f64> {
        let peer = self.peer.as_ref()?;
        let r = if higher_is_better(self.unit) {
            self.value / peer.value
        } else {
            peer.value / self.value
        };
        r.is_finite().then_some(r)
    }

    /// One JSON object: `{"scenario","name","value","unit"}` plus `"peer"`,
    /// `"peer_value"` and `"ratio"` when a peer ran.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::json!({
            "scenario": self.scenario,
            "name": self.name,
            "value": round(self.value),
            "unit": self.unit,
        });
        if let (Some(peer), Some(map)) = (&self.peer, obj.as_object_mut()) {
            map.insert("peer".into(), peer.name.clone().into());
            map.insert("peer_value".into(), round(peer.value).into());
            if let Some(r) = self.ratio() {
                map.insert("ratio".into(), round(r).into());
            }
        }
        obj
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn human(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The figures as an aligned text table.
pub(crate) fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 6]> = figures
        .iter()
        .map(|f| {
            [
                f.scenario.to_string(),
                f.name.clone(),
                format!("{} {}", human(f.value), f.unit),
                f.peer.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                f.peer
                    .as_ref()
                    .map(|p| format!("{} {}", human(p.value), f.unit))
                    .unwrap_or_default(),
                f.ratio().map(|r| format!("{r:.2}")).unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "scenario",
        "figure",
        "kith",
        "peer / ceiling",
        "peer value",
        "ratio",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::from("|");
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(s, " {cell:<w$} |");
        }
        out.push_str(&s);
        out.push('\n');
    };
    line(&header.map(String::from));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &rows {
        line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_above_one_when_kith_does_better() {
        let rate = Figure::new("s", "r", 200.0, "docs/s").with_peer("p", 100.0);
        assert_eq!(rate.ratio(), Some(2.0));
        let time = Figure::new("s", "t", 50.0, "ns").with_peer("p", 100.0);
        assert_eq!(time.ratio(), Some(2.0));
        let json = time.to_json();
        assert_eq!(json["ratio"], 2.0);
        assert_eq!(json["peer"], "p");
        assert!(table(&[rate, time]).contains("| s "));
    }
}
