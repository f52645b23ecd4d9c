//! Every kind of figure the program writes is well-formed XML with an `<svg>` root, a title,
//! axis labels and (for several series) a legend; images are valid PNG data.

use sparsegrad::report::svg::{normalise, png_grey, GreyImage, HeatMap, ImageGrid, LineChart, Series};

mod support;

use support::parse;

#[test]
fn line_chart_is_well_formed_with_labels_and_legend() {
    let c = LineChart {
        title: "Accuracy vs labels <MNIST & co>".into(),
        x_label: "labels per class".into(),
        y_label: "test accuracy (%)".into(),
        log_x: true,
        y_range: None,
        series: vec![
            Series { name: "lenet".into(), points: vec![(1.0, 40.0, 5.0), (10.0, 80.0, 2.0), (100.0, 95.0, 0.5)] },
            Series {
                name: "sf-lenet".into(),
                points: vec![(1.0, 45.0, 4.0), (10.0, f64::NAN, 0.0), (100.0, 96.0, 0.3)],
            },
        ],
    };
    let t = parse(&c.to_svg());
    for want in ["Accuracy vs labels <MNIST & co>", "labels per class", "test accuracy (%)", "lenet", "sf-lenet", "10"]
    {
        assert!(t.iter().any(|s| s == want), "missing text {want:?} in {t:?}");
    }
}

#[test]
fn heat_map_is_well_formed() {
    let h = HeatMap {
        title: "accuracy under noise".into(),
        x_label: "λ at test time".into(),
        y_label: "noise σ".into(),
        value_label: "accuracy (%)".into(),
        cols: vec!["0.1".into(), "0.2".into()],
        rows: vec!["0".into(), "0.1".into(), "0.2".into()],
        values: vec![vec![90.0, 89.0], vec![70.0, 75.0], vec![f64::NAN, 60.0]],
        marked: vec![(0, 0), (1, 1), (2, 1)],
    };
    let t = parse(&h.to_svg());
    for want in ["λ at test time", "noise σ", "accuracy (%)", "90.0", "–"] {
        assert!(t.iter().any(|s| s == want), "missing {want:?} in {t:?}");
    }
}

#[test]
fn image_grid_is_well_formed_and_embeds_valid_png() {
    let img = |c: &str| GreyImage { caption: c.into(), w: 3, h: 2, pixels: normalise(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) };
    let g = ImageGrid {
        title: "atoms".into(),
        cols: 2,
        scale: 8.0,
        images: vec![img("a"), img("b"), img("c")],
        note: "black = min, white = max of each atom".into(),
    };
    let svg = g.to_svg();
    let t = parse(&svg);
    assert!(t.iter().any(|s| s == "atoms") && t.iter().any(|s| s == "c"), "{t:?}");
    assert_eq!(svg.matches("data:image/png;base64,").count(), 3);
    let png = png_grey(3, 2, &normalise(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    // A larger image spans several stored deflate blocks.
    let big = png_grey(300, 300, &vec![0.5; 90000]);
    assert!(big.len() > 90300);
}

/// The `width` attribute of the root `<svg>`.
fn svg_width(svg: &str) -> f64 {
    let i = svg.find("<svg ").unwrap();
    let rest = &svg[i..];
    let j = rest.find(" width=\"").unwrap() + 8;
    rest[j..j + rest[j..].find('"').unwrap()].parse().unwrap()
}

#[test]
fn a_long_title_widens_a_small_figure_instead_of_being_clipped() {
    // A 1×1 heat map and a one-image grid with titles far wider than their plots (the
    // `--quick` grids drew their titles off the left edge before).
    let title = "test accuracy (%) vs noise σ and stem λ (cifar100-coarse, sdnet20, the quick grid)";
    let h = HeatMap {
        title: title.into(),
        x_label: "λ".into(),
        y_label: "σ".into(),
        value_label: "%".into(),
        cols: vec!["0.1".into()],
        rows: vec!["0".into()],
        values: vec![vec![1.0]],
        marked: vec![],
    };
    let g = ImageGrid {
        title: title.into(),
        cols: 1,
        scale: 1.0,
        images: vec![GreyImage { caption: String::new(), w: 2, h: 2, pixels: normalise(&[0.0, 1.0, 2.0, 3.0]) }],
        note: String::new(),
    };
    let need = title.chars().count() as f64 * 15.0 * 0.55;
    for svg in [h.to_svg(), g.to_svg()] {
        parse(&svg);
        assert!(svg_width(&svg) >= need, "width {} < {need}", svg_width(&svg));
    }
}
