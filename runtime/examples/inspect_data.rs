//! Load a dataset and print what was found: `cargo run --release -p resnetc-runtime --example inspect_data -- PATH`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inspect_data PATH (a folder, .tar or .tar.gz)");
        std::process::exit(2);
    };
    let start = std::time::Instant::now();
    match resnetc_runtime::data::load(std::path::Path::new(&path), [3, 32, 32]) {
        Ok(ds) => {
            let (mean, std) = ds.train.channel_stats().unwrap();
            println!(
                "{path}: {} — {} train, {} test images, {} classes {:?}",
                ds.format,
                ds.train.len(),
                ds.test.len(),
                ds.classes.len(),
                ds.classes
            );
            println!("train mean {mean:.4?} std {std:.4?}; loaded in {:.2?}", start.elapsed());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
