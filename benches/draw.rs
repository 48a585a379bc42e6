//! `resnetc draw` time per shipped spec, from the checked network to the SVG (default
//! `--expand none`) and to the HTML page (goal: every SVG under 100 ms; README, "Seeing a
//! network").

use criterion::{Criterion, criterion_group, criterion_main};
use resnetc::draw::{self, Options};
use resnetc_compiler::Compilation;
use std::hint::black_box;

fn draw_specs(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut specs: Vec<_> = [root.clone(), root.join("ablations"), root.join("imagenet")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    specs.sort();
    let mut group = c.benchmark_group("draw");
    group.sample_size(10);
    for path in specs {
        let name = path.strip_prefix(&root).unwrap().with_extension("").to_string_lossy().into_owned();
        let mut compilation = Compilation::new();
        let id = compilation.add_source(name.as_str(), std::fs::read_to_string(&path).unwrap());
        let net = compilation.check(id, &[]).unwrap();
        let options = Options::default();
        group.bench_function(format!("{name}.svg"), |b| {
            b.iter(|| black_box(draw::svg(black_box(&net), &options).unwrap()))
        });
        group.bench_function(format!("{name}.html"), |b| {
            b.iter(|| black_box(draw::html(black_box(&net), &options).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, draw_specs);
criterion_main!(benches);
