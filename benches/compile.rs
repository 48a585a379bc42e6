//! Parse + check + emit time per shipped spec (goal: under 5 ms each, preresnet-1001 included).

use criterion::{Criterion, criterion_group, criterion_main};
use resnetc_compiler::Compilation;
use std::hint::black_box;

fn compile_specs(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let mut specs: Vec<_> = [root.clone(), root.join("ablations")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    specs.sort();
    let mut group = c.benchmark_group("compile");
    for path in specs {
        let name = path.strip_prefix(&root).unwrap().with_extension("").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        group.bench_function(&name, |b| {
            b.iter(|| {
                let mut compilation = Compilation::new();
                let id = compilation.add_source(name.as_str(), black_box(text.as_str()));
                black_box(compilation.compile(id, &[]).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, compile_specs);
criterion_main!(benches);
