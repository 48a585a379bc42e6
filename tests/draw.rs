//! `resnetc draw`: snapshots of a few diagrams, and properties of every shipped spec's.

mod common;

use resnetc::draw::{self, Direction, Expand, Options};
use resnetc_compiler::ir::{Network, Node, NodeKind};

fn options(expand: Expand) -> Options {
    Options { expand, direction: Direction::Down }
}

/// How many `<g class="node …">` boxes a drawing holds.
fn boxes(svg: &str) -> usize {
    svg.matches("<g class=\"node ").count()
}

/// Every shipped spec, and the test cases that check.
fn shipped() -> Vec<String> {
    let mut specs = common::net_files("specs");
    specs.extend(common::net_files("specs/ablations"));
    specs.extend(common::net_files("specs/imagenet"));
    specs
}

#[test]
fn snapshots() {
    for (path, expand, direction) in [
        ("specs/resnet-20.net", Expand::None, Direction::Down),
        ("specs/resnet-20.net", Expand::All, Direction::Down),
        ("specs/densenet-bc-100-12.net", Expand::None, Direction::Right),
        ("specs/ablations/exclusive-gating.net", Expand::Stages, Direction::Down),
    ] {
        let net = common::check(path, &[]);
        let svg = draw::svg(&net, &Options { expand, direction }).unwrap();
        let name = format!("{}.{expand:?}.svg", common::snapshot_name(path)).to_lowercase();
        insta::with_settings!({ input_file => common::root().join(path), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, svg);
        });
    }
}

/// Boxes drawn for `nodes` with every container open: the summary's rows (layers and
/// combinations), the same count `summary` prints.
fn rows_open(net: &Network) -> usize {
    net.summary_rows().len()
}

/// Boxes drawn for `nodes` with stages and blocks closed.
fn closed_count(nodes: &[Node], open_stages: bool) -> usize {
    nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Layer(_) => 1,
            NodeKind::Stage { blocks, .. } if open_stages => closed_count(blocks, open_stages),
            NodeKind::Block { .. } | NodeKind::Stage { .. } => 1,
            NodeKind::Combine { combinator, arms } => {
                usize::from(combinator.is_some()) + arms.iter().map(|a| closed_count(a, open_stages)).sum::<usize>()
            }
            NodeKind::Merge { arms, .. } => 1 + arms.iter().map(|(_, a)| closed_count(a, open_stages)).sum::<usize>(),
        })
        .sum()
}

#[test]
fn every_shipped_spec_draws_one_box_per_layer_and_is_deterministic() {
    for path in shipped() {
        let net = common::check(&path, &[]);
        for (expand, expected) in [
            (Expand::All, rows_open(&net)),
            (Expand::Stages, closed_count(&net.body, true)),
            (Expand::None, closed_count(&net.body, false)),
        ] {
            let svg = draw::svg(&net, &options(expand)).unwrap();
            // Plus the input and the output.
            assert_eq!(boxes(&svg), expected + 2, "{path} {expand:?}");
            assert_eq!(svg, draw::svg(&net, &options(expand)).unwrap(), "{path} {expand:?}: not deterministic");
            assert!(svg.starts_with("<?xml") && svg.ends_with("</svg>\n"), "{path}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{path}: a coordinate is not finite");
        }
        let page = draw::html(&net, &options(Expand::None)).unwrap();
        assert!(page.ends_with("</html>\n"), "{path}");
    }
}

#[test]
fn layer_names_and_shapes_are_the_summarys() {
    let net = common::check("specs/resnet-20.net", &[]);
    let svg = draw::svg(&net, &options(Expand::All)).unwrap();
    for row in net.summary_rows() {
        let attr = format!(
            "data-name=\"{}\" data-kind=\"{}\" data-out=\"{}\" data-params=\"{}\" data-macs=\"{}\"",
            row.name, row.kind, row.output, row.params, row.macs
        );
        assert!(svg.contains(&attr), "missing {attr}");
    }
    // A shape is written on the edge out of each box that changes it: the stem's convolution,
    // the strided convolution and the projection of each downsampling unit, the pool, the
    // classifier.
    for (shape, times) in [("16×32×32", 1), ("32×16×16", 2), ("64×8×8", 2), ("64×1×1", 1), ("10", 1)] {
        assert_eq!(svg.matches(&format!("\">{shape}</text>")).count(), times, "{shape}");
    }
    // Shortcuts are side edges: one per residual unit (nine).
    assert_eq!(svg.matches("class=\"edge side\"").count(), 9);
}

#[test]
fn a_merge_is_one_node_labelled_with_its_expression() {
    let net = common::check(
        "specs/ablations/exclusive-gating.net",
        &[("depth", 8)].map(|(k, v)| resnetc_compiler::Override::parse(&format!("{k}={v}")).unwrap()),
    );
    let svg = draw::svg(&net, &options(Expand::All)).unwrap();
    assert_eq!(svg.matches("g * f + (1 - g) * h</text>").count(), 3, "one per unit");
    // The arms' edges are named.
    for arm in ["f", "g", "h"] {
        assert!(svg.contains(&format!(">{arm}</text>")), "no edge named {arm}");
    }
}

#[test]
fn the_page_opens_every_closed_stage_in_place_and_every_block_in_the_panel() {
    let net = common::check("specs/resnet-20.net", &[]);
    let page = draw::html(&net, &options(Expand::None)).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // The overview, and one view per stage with that stage open.
    assert_eq!(page.matches("<section class=\"view\"").count(), 4);
    for stage in ["stage1", "stage2", "stage3"] {
        assert!(page.contains(&format!("data-view=\"{stage}\" hidden")));
    }
    // The blocks the open stages show, each in the side panel.
    for block in 0..3 {
        assert!(page.contains(&format!("<template data-panel=\"stage2.{block}\">")));
    }
    // Self-contained: no fetched scripts, styles or fonts.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http") && !page.contains("@import"));
    assert_eq!(page, draw::html(&net, &options(Expand::None)).unwrap());
}

#[test]
fn right_runs_left_to_right() {
    let net = common::check("specs/resnet-20.net", &[]);
    let down = draw::svg(&net, &Options { expand: Expand::None, direction: Direction::Down }).unwrap();
    let right = draw::svg(&net, &Options { expand: Expand::None, direction: Direction::Right }).unwrap();
    let size = |svg: &str| {
        let tag = &svg[svg.find("<svg").unwrap()..];
        let num = |attr: &str| -> f64 {
            let from = tag.find(attr).unwrap() + attr.len();
            tag[from..tag[from..].find('"').unwrap() + from].parse().unwrap()
        };
        (num("width=\""), num("height=\""))
    };
    let (dw, dh) = size(&down);
    let (rw, rh) = size(&right);
    assert!(dh > dw && rw > rh, "down {dw}×{dh}, right {rw}×{rh}");
}

#[test]
fn the_cli_writes_svg_or_html_and_draws_nothing_for_a_spec_that_does_not_check() {
    let dir = std::env::temp_dir().join(format!("resnetc-draw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["svg", "html"] {
        let out = dir.join(format!("net.{ext}"));
        let r = common::resnetc(&["draw", "specs/resnet-20.net", "--expand", "stages", "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", common::text(&r.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("@generated by resnetc draw"));
    }
    let r = common::resnetc(&["draw", "specs/resnet-20.net", "-o", dir.join("net.png").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(common::text(&r.stderr).contains(".svg or .html"));

    let bad = dir.join("bad.net");
    std::fs::write(&bad, "network bad() {\n    input 3x32x32\n    conv3x3(16, stride = 0)\n}\n").unwrap();
    let out = dir.join("bad.svg");
    let r = common::resnetc(&["draw", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = common::text(&r.stderr);
    assert!(stderr.contains("bad.net:3:"), "{stderr}");
    assert!(!out.exists(), "a spec that does not check drew something");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_readme_pictures_are_what_draw_draws_now() {
    // Regenerate with the commands in README.md, "Seeing a network".
    for (path, expand, picture) in [
        ("specs/resnet-20.net", Expand::All, "docs/draw/resnet-20.svg"),
        ("specs/densenet-bc-100-12.net", Expand::None, "docs/draw/densenet-bc-100-12.svg"),
    ] {
        let net = common::check(path, &[]);
        let now = draw::svg(&net, &options(expand)).unwrap();
        let committed = std::fs::read_to_string(common::root().join(picture)).unwrap();
        assert!(
            now == committed,
            "{picture} is out of date: cargo run -- draw {path} --expand {expand:?} -o {picture}"
        );
    }
    let net = common::check("specs/resnet-20.net", &[]);
    let page = draw::html(&net, &options(Expand::None)).unwrap();
    assert!(
        page == std::fs::read_to_string(common::root().join("docs/draw/resnet-20.html")).unwrap(),
        "docs/draw/resnet-20.html is out of date"
    );
}
