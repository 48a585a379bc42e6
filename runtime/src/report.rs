//! What a training run leaves in its folder besides checkpoints: `metrics.csv` (one row per
//! epoch), `curves.svg` (loss and accuracy against epoch) and `summary.json`.
//!
//! Every file is replaced atomically (written beside, synced, renamed: burn-pack's
//! [`AtomicFile`]), so a run killed at any moment leaves complete files behind.

use burn_pack::AtomicFile;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch of `metrics.csv`. Accuracies are fractions; val columns are empty without a
/// validation split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub epoch: usize,
    /// The learning rate of the epoch's last iteration.
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Top-5 accuracies (the true class among the five highest logits); empty in files written
    /// before they were recorded.
    #[serde(default)]
    pub val_top5: Option<f64>,
    #[serde(default)]
    pub test_top5: Option<f64>,
    /// Wall time of the epoch: training, evaluation and checkpointing.
    pub seconds: f64,
    /// Training images per second over the epoch's training pass.
    pub images_per_sec: f64,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The spec file the network came from.
    pub spec: String,
    pub network: String,
    /// Trainable parameters (as `resnetc summary` counts them).
    pub params: u64,
    /// Epochs completed.
    pub epochs: usize,
    /// Epochs the recipe asked for.
    pub epochs_planned: usize,
    /// Test accuracy (fraction) of the last completed epoch.
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    /// Top-5 test accuracy of the last completed epoch.
    #[serde(default)]
    pub test_top5: Option<f64>,
    /// Best validation accuracy and its epoch; `null` without a validation split.
    pub best_val_accuracy: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Test accuracy of the epoch chosen by validation.
    pub test_accuracy_at_best_val: Option<f64>,
    #[serde(default)]
    pub test_top5_at_best_val: Option<f64>,
    /// Wall seconds summed over completed epochs (resumed runs included).
    pub seconds: f64,
    /// Mean training throughput over completed epochs.
    pub images_per_sec: Option<f64>,
    /// The `--device` value (`cpu`, `cpu:2`, `wgpu`, `cuda:0,1`).
    pub device: String,
    /// What the main device is: its adapter's name and backend.
    #[serde(default)]
    pub adapter: String,
    /// What convolutions and linear layers computed in.
    #[serde(default)]
    pub precision: crate::precision::Precision,
    pub seed: u64,
    pub train_images: usize,
    pub val_images: usize,
    pub test_images: usize,
    /// Why training stopped before its last epoch, if it did.
    pub stopped: Option<String>,
}

impl Summary {
    /// Fill the result fields from the epochs run so far.
    pub fn fill_from(&mut self, rows: &[Row]) {
        self.epochs = rows.len();
        let last = rows.last();
        self.test_accuracy = last.map(|r| r.test_acc);
        self.test_loss = last.map(|r| r.test_loss);
        self.test_top5 = last.and_then(|r| r.test_top5);
        let best = best_by_validation(rows);
        self.best_epoch = best.map(|r| r.epoch);
        self.best_val_accuracy = best.and_then(|r| r.val_acc);
        self.test_accuracy_at_best_val = best.map(|r| r.test_acc);
        self.test_top5_at_best_val = best.and_then(|r| r.test_top5);
        self.seconds = rows.iter().map(|r| r.seconds).sum();
        self.images_per_sec =
            (!rows.is_empty()).then(|| rows.iter().map(|r| r.images_per_sec).sum::<f64>() / rows.len() as f64);
    }
}

/// The epoch with the highest validation accuracy (the first of equals); `None` without one.
pub fn best_by_validation(rows: &[Row]) -> Option<&Row> {
    rows.iter().filter(|r| r.val_acc.is_some()).fold(None, |best: Option<&Row>, r| match best {
        Some(b) if b.val_acc >= r.val_acc => Some(b),
        _ => Some(r),
    })
}

/// Write `bytes` to `path` all or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (scratch, mut file) = AtomicFile::create(path).map_err(std::io::Error::other)?;
    std::io::Write::write_all(&mut file, bytes)?;
    drop(file);
    scratch.commit().map_err(std::io::Error::other)
}

/// Copy `from` onto `to` all or nothing (`last.bpk`, `best.bpk`).
pub fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let (scratch, file) = AtomicFile::create(to).map_err(std::io::Error::other)?;
    drop(file);
    std::fs::copy(from, scratch.path())?;
    scratch.commit().map_err(std::io::Error::other)
}

/// `metrics.csv` text.
pub fn csv(rows: &[Row]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        w.write_record(HEADER).expect("writing to memory");
    }
    for r in rows {
        w.serialize(r).expect("rows serialize to CSV");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of numbers is UTF-8")
}

const HEADER: [&str; 12] = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "val_top5",
    "test_top5",
    "seconds",
    "images_per_sec",
];

/// Read `metrics.csv` back (to resume a run).
pub fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    r.deserialize().map(|row| row.map_err(|e| format!("{}: {e}", path.display()))).collect()
}

/// `curves.svg`: loss (left) and accuracy (right) against epoch, train against test (and
/// validation when held out).
pub fn curves(rows: &[Row], title: &str) -> Result<String, String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(500);
        let epochs = rows.last().map_or(1, |r| r.epoch).max(1) as f64;
        let finite = |v: f64| v.is_finite().then_some(v);
        let max_loss = rows
            .iter()
            .flat_map(|r| [Some(r.train_loss), r.val_loss, Some(r.test_loss)])
            .flatten()
            .filter_map(finite)
            .fold(0.1f64, f64::max);
        type Series = (&'static str, RGBColor, fn(&Row) -> Option<f64>);
        let panels: [(&DrawingArea<_, _>, &str, f64, [Series; 3]); 2] = [
            (
                &left,
                "loss",
                max_loss * 1.05,
                [
                    ("train", BLUE, |r| Some(r.train_loss)),
                    ("val", GREEN, |r| r.val_loss),
                    ("test", RED, |r| Some(r.test_loss)),
                ],
            ),
            (
                &right,
                "accuracy",
                1.0,
                [
                    ("train", BLUE, |r| Some(r.train_acc)),
                    ("val", GREEN, |r| r.val_acc),
                    ("test", RED, |r| Some(r.test_acc)),
                ],
            ),
        ];
        for (area, name, top, series) in panels {
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..epochs, 0f64..top)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("epoch").y_desc(name).draw().map_err(|e| e.to_string())?;
            for (label, colour, get) in series {
                let points: Vec<(f64, f64)> =
                    rows.iter().filter_map(|r| get(r).and_then(finite).map(|v| (r.epoch as f64, v))).collect();
                if points.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(if name == "loss" {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, val: Option<f64>, test: f64) -> Row {
        Row {
            epoch,
            lr: 0.1,
            train_loss: 2.0 / epoch as f64,
            train_acc: 0.1 * epoch as f64,
            val_loss: val.map(|v| 1.0 - v),
            val_acc: val,
            test_loss: 1.0 - test,
            test_acc: test,
            val_top5: val.map(|v| (v + 0.2).min(1.0)),
            test_top5: Some((test + 0.2).min(1.0)),
            seconds: 10.0,
            images_per_sec: 100.0 * epoch as f64,
        }
    }

    #[test]
    fn csv_round_trips_with_empty_validation_columns() {
        let rows = vec![row(1, None, 0.3), row(2, None, 0.4)];
        let text = csv(&rows);
        assert!(
            text.starts_with(
                "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,val_top5,test_top5,seconds,images_per_sec\n"
            )
        );
        assert!(text.contains("\n1,0.1,2.0,0.1,,,0.7,0.3,,0.5,10.0,100.0\n"), "{text}");
        let dir = std::env::temp_dir().join(format!("resnetc-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        write_atomic(&path, text.as_bytes()).unwrap();
        assert_eq!(read_csv(&path).unwrap(), rows);
        assert_eq!(csv(&[]).trim(), HEADER.join(","));
    }

    #[test]
    fn metrics_written_before_top5_was_recorded_still_resume() {
        let dir = std::env::temp_dir().join(format!("resnetc-report-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.csv");
        let old = "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,seconds,images_per_sec\n\
                   1,0.1,2.0,0.1,,,0.7,0.3,10.0,100.0\n";
        std::fs::write(&path, old).unwrap();
        let rows = read_csv(&path).unwrap();
        assert_eq!(rows, vec![Row { val_top5: None, test_top5: None, ..row(1, None, 0.3) }]);
    }

    #[test]
    fn best_is_chosen_by_validation_never_by_test() {
        let rows =
            vec![row(1, Some(0.5), 0.9), row(2, Some(0.7), 0.6), row(3, Some(0.7), 0.95), row(4, Some(0.6), 0.99)];
        let best = best_by_validation(&rows).unwrap();
        assert_eq!(best.epoch, 2, "highest validation accuracy, first of equals");
        assert!(best_by_validation(&[row(1, None, 0.9)]).is_none());
        let mut s = Summary {
            spec: "x.net".into(),
            network: "x".into(),
            params: 1,
            epochs: 0,
            epochs_planned: 4,
            test_accuracy: None,
            test_loss: None,
            best_val_accuracy: None,
            best_epoch: None,
            test_accuracy_at_best_val: None,
            test_top5: None,
            test_top5_at_best_val: None,
            seconds: 0.0,
            images_per_sec: None,
            device: "cpu".into(),
            adapter: String::new(),
            precision: Default::default(),
            seed: 0,
            train_images: 1,
            val_images: 1,
            test_images: 1,
            stopped: None,
        };
        s.fill_from(&rows);
        assert_eq!((s.epochs, s.best_epoch, s.test_accuracy), (4, Some(2), Some(0.99)));
        assert_eq!(s.test_accuracy_at_best_val, Some(0.6));
        assert_eq!(s.seconds, 40.0);
    }

    #[test]
    fn curves_draw_every_series() {
        let svg =
            curves(&[row(1, Some(0.5), 0.4), row(2, Some(0.6), 0.5), row(3, Some(0.62), 0.55)], "resnet_20").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for label in ["loss", "accuracy", "epoch", "train", "val", "test", "resnet_20"] {
            assert!(svg.contains(&format!(">{label}<")) || svg.contains(label), "{label} missing");
        }
        assert!(svg.matches("<polyline").count() >= 6, "three lines a panel");
        // Nothing drawn from NaN.
        let mut bad = row(2, None, 0.5);
        bad.train_loss = f64::NAN;
        assert!(curves(&[row(1, None, 0.4), bad], "x").unwrap().contains("<polyline"));
    }
}
