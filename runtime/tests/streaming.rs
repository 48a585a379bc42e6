//! A streamed dataset's memory stays bounded by the decoded cache, not by the dataset: the
//! test's own process (alone in this binary) measures its peak resident set.

use resnetc_runtime::bench::{loader, peak_rss_bytes};
use resnetc_runtime::data::{Augment, load};

/// Resident set now (`VmRSS`), in bytes.
fn rss_now() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn peak_memory_follows_the_cache_not_the_dataset() {
    if peak_rss_bytes().is_none() {
        eprintln!("skipped: no /proc/self/status");
        return;
    }
    let dir = std::env::temp_dir().join(format!("resnetc-streaming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 160 JPEGs of 400×300 and 300×400: 57.6 MB of pixels decoded, ~1 MB encoded.
    let mut decoded = 0u64;
    for i in 0..160u32 {
        let (w, h) = if i % 2 == 0 { (400, 300) } else { (300, 400) };
        let class = ["a", "b"][i as usize % 2];
        let split = if i < 150 { "train" } else { "val" };
        let path = dir.join(format!("{split}/{class}/{i}.jpg"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x + i) as u8, (y * 2) as u8, (x ^ y) as u8]));
        img.save(&path).unwrap();
        decoded += u64::from(w * h * 3);
    }
    let aug = Augment::new(vec![0.5; 3], vec![0.25; 3], 0, true);
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;

    // A 4 MiB cache: two passes grow the peak by far less than the decoded set.
    let mut ds = load(&dir, [3, 64, 64]).unwrap();
    assert_eq!(ds.format, "image-folder (streamed)");
    let small = ds.cache_decoded(4 << 20).unwrap();
    let before = rss_now();
    for pass in 0..2 {
        loader(&ds.train, &aug, 16, 2, pass).unwrap();
    }
    let bounded = peak_rss_bytes().unwrap().saturating_sub(before);
    assert!(small.stats().bytes <= 4 << 20);
    eprintln!("decoded set {:.1} MiB; peak growth with a 4 MiB cache {:.1} MiB", mib(decoded), mib(bounded));
    assert!(bounded < decoded / 3, "peak grew {:.1} MiB for {:.1} MiB decoded", mib(bounded), mib(decoded));

    // The measurement can see the difference: a cache that holds everything keeps it all.
    let mut ds = load(&dir, [3, 64, 64]).unwrap();
    let large = ds.cache_decoded(1 << 30).unwrap();
    loader(&ds.train, &aug, 16, 2, 0).unwrap();
    let held = large.stats().bytes;
    let everything = peak_rss_bytes().unwrap().saturating_sub(before);
    eprintln!("with a 1 GiB cache: {:.1} MiB held, peak growth {:.1} MiB", mib(held as u64), mib(everything));
    assert!(everything > held as u64 * 9 / 10, "the peak counts the cache ({} vs {held})", everything);
    let _ = std::fs::remove_dir_all(&dir);
}
