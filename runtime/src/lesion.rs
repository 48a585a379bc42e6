//! The lesion study of Veit et al. (2016), "Residual networks behave like ensembles of
//! relatively shallow networks", Fig. 3: evaluate a trained network with the residual branch
//! of one residual unit removed at a time (its shortcut kept) — or two adjacent units — and
//! compare with the intact network. `resnetc lesion`.

use crate::data::{Augment, Split};
use crate::model::DynNet;
use crate::train::{Evaluation, TrainError, evaluate};
use burn::tensor::Device;

/// One evaluation with some residual branches removed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LesionRow {
    /// The units whose residual branch was removed (module paths, `stage2.0`).
    pub removed: Vec<String>,
    /// Their positions among the residual units, counted from 1 in forward order.
    pub positions: Vec<usize>,
    #[serde(flatten)]
    pub scores: Evaluation,
}

/// The intact network's scores and one row per lesion.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LesionReport {
    pub network: String,
    pub intact: Evaluation,
    pub rows: Vec<LesionRow>,
}

/// Evaluate `model` intact, then without each residual unit's residual branch in turn, then (with
/// `pairs`) without each two adjacent units'. `progress` hears about each evaluation as it starts.
#[allow(clippy::too_many_arguments)] // evaluate()'s five inputs plus what to lesion
pub fn study(
    network: &str,
    model: &DynNet,
    test: &Split,
    augment: &Augment,
    batch_size: usize,
    device: &Device,
    pairs: bool,
    mut progress: impl FnMut(&str),
) -> Result<LesionReport, TrainError> {
    let blocks = model.residual_blocks();
    if blocks.is_empty() {
        return Err(TrainError::Setup(format!(
            "{network} has no residual units (a block adding a residual branch to a shortcut): nothing to lesion"
        )));
    }
    progress("intact");
    let intact = evaluate(model, test, augment, batch_size, device)?;
    let mut lesions: Vec<Vec<usize>> = (0..blocks.len()).map(|i| vec![i]).collect();
    if pairs {
        lesions.extend((0..blocks.len().saturating_sub(1)).map(|i| vec![i, i + 1]));
    }
    let mut rows = Vec::with_capacity(lesions.len());
    for lesion in lesions {
        let removed: Vec<String> = lesion.iter().map(|&i| blocks[i].clone()).collect();
        progress(&removed.join(" + "));
        let names: Vec<&str> = removed.iter().map(String::as_str).collect();
        let lesioned = model.lesion(&names).map_err(TrainError::Setup)?;
        let scores = evaluate(&lesioned, test, augment, batch_size, device)?;
        rows.push(LesionRow { removed, positions: lesion.iter().map(|i| i + 1).collect(), scores });
    }
    Ok(LesionReport { network: network.to_string(), intact, rows })
}

impl LesionReport {
    /// A plain-text table: one row per lesion, accuracy and its change from the intact network.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: intact top-1 {:.2}%, top-5 {:.2}%, loss {:.4} on {} test images\n",
            self.network,
            self.intact.top1 * 100.0,
            self.intact.top5 * 100.0,
            self.intact.loss,
            self.intact.images
        );
        out +=
            &format!("{:>5}  {:<24} {:>8} {:>8} {:>8} {:>8}\n", "#", "removed", "top-1 %", "change", "top-5 %", "loss");
        for row in &self.rows {
            let position = row.positions.iter().map(usize::to_string).collect::<Vec<_>>().join("+");
            out += &format!(
                "{:>5}  {:<24} {:>8.2} {:>+8.2} {:>8.2} {:>8.4}\n",
                position,
                row.removed.join(" + "),
                row.scores.top1 * 100.0,
                (row.scores.top1 - self.intact.top1) * 100.0,
                row.scores.top5 * 100.0,
                row.scores.loss
            );
        }
        out
    }

    /// CSV with a header: the intact network first (`removed` empty), then one row per lesion.
    pub fn csv(&self) -> Result<String, String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let fail = |e: csv::Error| e.to_string();
        w.write_record(["removed", "positions", "top1", "top5", "loss", "images"]).map_err(fail)?;
        let intact = std::iter::once((String::new(), String::new(), &self.intact));
        let rows = self.rows.iter().map(|r| {
            let positions = r.positions.iter().map(usize::to_string).collect::<Vec<_>>().join("+");
            (r.removed.join("+"), positions, &r.scores)
        });
        for (removed, positions, s) in intact.chain(rows) {
            w.write_record([
                removed,
                positions,
                s.top1.to_string(),
                s.top5.to_string(),
                s.loss.to_string(),
                s.images.to_string(),
            ])
            .map_err(fail)?;
        }
        String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }

    /// Test error against the removed unit, as the paper's Fig. 3: single lesions as points at
    /// the unit's position, adjacent pairs between their two units, the intact error as a line.
    pub fn plot(&self) -> Result<String, String> {
        use plotters::prelude::*;
        let error = |e: &Evaluation| (1.0 - e.top1) * 100.0;
        let units = self.rows.iter().filter(|r| r.positions.len() == 1).count().max(1);
        let top = self.rows.iter().map(|r| error(&r.scores)).fold(error(&self.intact), f64::max);
        let top = (top * 1.1).clamp(1.0, 100.0);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{}: test error with residual units removed", self.network), ("sans-serif", 18))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(52)
                .build_cartesian_2d(0.5f64..units as f64 + 0.5, 0f64..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("removed residual unit (forward order)")
                .y_desc("test error (%)")
                .draw()
                .map_err(|e| e.to_string())?;
            let intact = error(&self.intact);
            chart
                .draw_series(LineSeries::new(vec![(0.5, intact), (units as f64 + 0.5, intact)], BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label(format!("intact ({intact:.2}%)"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1)));
            type Pick = fn(&LesionRow) -> bool;
            let series: [(&str, RGBColor, Pick); 2] = [
                ("one unit removed", RED, |r| r.positions.len() == 1),
                ("two adjacent removed", BLUE, |r| r.positions.len() == 2),
            ];
            for (label, colour, pick) in series {
                let points: Vec<(f64, f64)> = self
                    .rows
                    .iter()
                    .filter(|r| pick(r))
                    .map(|r| {
                        let x = r.positions.iter().sum::<usize>() as f64 / r.positions.len() as f64;
                        (x, error(&r.scores))
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(1)))
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                    .map_err(|e| e.to_string())?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }
}
