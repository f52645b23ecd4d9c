//! SVG figures written by the program, with no plotting stack: line charts with error bars,
//! heat maps, and image grids (dictionary atoms, effective kernels, denoising examples).
//! Every figure has a title, axis labels with units, and a legend where it has several
//! series. The output is plain, well-formed SVG 1.1 (text escaped; images as embedded PNG).

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A colour-blind-safe palette (Okabe–Ito), cycled.
const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// One series of a line chart: points `(x, y, ±err)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// A line chart: one polyline per series with error bars, axes with ticks, a legend.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    /// Fixed y range; `None`: from the data (with the error bars).
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
}

fn svg_open(w: f64, h: f64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"
    )
}

/// A width that holds `text` at `font_px` (a generous average glyph width of 0.6 em, plus
/// margins), so a centred title is never clipped by a narrow figure.
pub fn text_width(text: &str, font_px: f64) -> f64 {
    text.chars().count() as f64 * font_px * 0.6 + 24.0
}

/// "Nice" tick values covering `[lo, hi]` (about `n` of them).
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut t = vec![];
    let mut k = 0;
    loop {
        let v = start + k as f64 * step;
        if v > hi + step * 1e-9 {
            break;
        }
        t.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1;
    }
    t
}

fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e6 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let (w, h) = (640.0, 420.0);
        let (l, r, t, b) = (70.0, 170.0, 40.0, 55.0);
        let (pw, ph) = (w - l - r, h - t - b);
        let tx = |x: f64| if self.log_x { x.max(1e-300).log10() } else { x };
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y, e) in pts {
            if !(x.is_finite() && y.is_finite()) {
                continue;
            }
            let e = if e.is_finite() { e } else { 0.0 };
            x0 = x0.min(tx(x));
            x1 = x1.max(tx(x));
            y0 = y0.min(y - e);
            y1 = y1.max(y + e);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x0 == x1 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        if let Some((a, b)) = self.y_range {
            (y0, y1) = (a, b);
        } else if y0 == y1 {
            y0 -= 0.5;
            y1 += 0.5;
        } else {
            let pad = 0.05 * (y1 - y0);
            y0 -= pad;
            y1 += pad;
        }
        let px = |x: f64| l + (tx(x) - x0) / (x1 - x0) * pw;
        let py = |y: f64| t + (1.0 - (y - y0) / (y1 - y0)) * ph;
        let mut s = svg_open(w, h);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            l + pw / 2.0,
            esc(&self.title)
        );
        let _ = writeln!(s, "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>");
        // x ticks: at the data's x values on a log axis (label counts), nice values otherwise.
        let xt: Vec<f64> = if self.log_x {
            let mut v: Vec<f64> =
                self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).filter(|x| *x > 0.0).collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        } else {
            ticks(x0, x1, 6)
        };
        for x in xt {
            let sx = px(x);
            let _ = writeln!(
                s,
                "<line x1=\"{sx:.1}\" y1=\"{}\" x2=\"{sx:.1}\" y2=\"{}\" stroke=\"#333\"/>",
                t + ph,
                t + ph + 5.0
            );
            let _ = writeln!(
                s,
                "<text x=\"{sx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                t + ph + 18.0,
                fmt_tick(x)
            );
        }
        for y in ticks(y0, y1, 6) {
            let sy = py(y);
            let _ = writeln!(s, "<line x1=\"{}\" y1=\"{sy:.1}\" x2=\"{l}\" y2=\"{sy:.1}\" stroke=\"#333\"/>", l - 5.0);
            let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{sy:.1}\" x2=\"{}\" y2=\"{sy:.1}\" stroke=\"#ddd\"/>", l + pw);
            let _ =
                writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", l - 8.0, sy + 4.0, fmt_tick(y));
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            l + pw / 2.0,
            h - 12.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            "<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">{1}</text>",
            t + ph / 2.0,
            esc(&self.y_label)
        );
        for (i, ser) in self.series.iter().enumerate() {
            let c = colour(i);
            let finite: Vec<_> = ser.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            let path: Vec<String> = finite.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect();
            if path.len() > 1 {
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
                    path.join(" ")
                );
            }
            for p in finite {
                let (sx, sy) = (px(p.0), py(p.1));
                if p.2 > 0.0 && p.2.is_finite() {
                    let (a, b) = (py(p.1 - p.2), py(p.1 + p.2));
                    let _ =
                        writeln!(s, "<line x1=\"{sx:.1}\" y1=\"{a:.1}\" x2=\"{sx:.1}\" y2=\"{b:.1}\" stroke=\"{c}\"/>");
                    for yy in [a, b] {
                        let _ = writeln!(
                            s,
                            "<line x1=\"{:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{c}\"/>",
                            sx - 4.0,
                            sx + 4.0
                        );
                    }
                }
                let _ = writeln!(s, "<circle cx=\"{sx:.1}\" cy=\"{sy:.1}\" r=\"3\" fill=\"{c}\"/>");
            }
            let ly = t + 10.0 + 20.0 * i as f64;
            let lx = l + pw + 15.0;
            let _ = writeln!(
                s,
                "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/>",
                lx + 20.0
            );
            let _ = writeln!(s, "<text x=\"{}\" y=\"{}\">{}</text>", lx + 26.0, ly + 4.0, esc(&ser.name));
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A heat map: `values[row][col]`, rows labelled `rows` (y axis), columns `cols` (x axis),
/// each cell coloured on a sequential scale and printed with its value; a colour bar.
#[derive(Clone, Debug)]
pub struct HeatMap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub value_label: String,
    pub cols: Vec<String>,
    pub rows: Vec<String>,
    pub values: Vec<Vec<f64>>,
    /// Cells to outline (e.g. the best λ per σ): `(row, col)`.
    pub marked: Vec<(usize, usize)>,
}

/// A sequential colour for `t ∈ [0, 1]` (light yellow → dark blue, approximately viridis-like).
pub fn ramp(t: f64) -> String {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let stops =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let m = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

impl HeatMap {
    pub fn to_svg(&self) -> String {
        let (nr, nc) = (self.rows.len().max(1), self.cols.len().max(1));
        let cell = 44.0;
        let (l, t) = (80.0, 45.0);
        let (pw, ph) = (cell * nc as f64, cell * 0.7 * nr as f64);
        let (w, h) = ((l + pw + 110.0).max(text_width(&self.title, 15.0)), t + ph + 60.0);
        let ch = ph / nr as f64;
        let finite = self.values.iter().flatten().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo <= hi { (lo, if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) };
        let mut s = svg_open(w, h);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            w / 2.0,
            esc(&self.title)
        );
        for (r, row) in self.values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (x, y) = (l + c as f64 * cell, t + r as f64 * ch);
                let t01 = (v - lo) / (hi - lo);
                let fill = if v.is_finite() { ramp(t01) } else { "#cccccc".to_string() };
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{ch:.1}\" fill=\"{fill}\"/>"
                );
                let txt = if t01 > 0.6 { "black" } else { "white" };
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"{txt}\">{}</text>",
                    x + cell / 2.0,
                    y + ch / 2.0 + 3.0,
                    if v.is_finite() { format!("{v:.1}") } else { "–".into() }
                );
            }
        }
        for &(r, c) in &self.marked {
            let (x, y) = (l + c as f64 * cell, t + r as f64 * ch);
            let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{ch:.1}\" fill=\"none\" stroke=\"red\" stroke-width=\"2\"/>");
        }
        for (c, name) in self.cols.iter().enumerate() {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                l + (c as f64 + 0.5) * cell,
                t + ph + 16.0,
                esc(name)
            );
        }
        for (r, name) in self.rows.iter().enumerate() {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                l - 6.0,
                t + (r as f64 + 0.5) * ch + 4.0,
                esc(name)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            l + pw / 2.0,
            t + ph + 40.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}</text>",
            t + ph / 2.0,
            esc(&self.y_label)
        );
        // Colour bar.
        let bx = l + pw + 25.0;
        for k in 0..20 {
            let y = t + ph * (1.0 - (k + 1) as f64 / 20.0);
            let _ = writeln!(
                s,
                "<rect x=\"{bx}\" y=\"{y:.1}\" width=\"14\" height=\"{:.1}\" fill=\"{}\"/>",
                ph / 20.0 + 0.5,
                ramp((k as f64 + 0.5) / 20.0)
            );
        }
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\">{}</text>", bx + 18.0, t + 8.0, fmt_tick((hi * 10.0).round() / 10.0));
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\">{}</text>", bx + 18.0, t + ph, fmt_tick((lo * 10.0).round() / 10.0));
        let _ = writeln!(
            s,
            "<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" transform=\"rotate(90 {0} {1})\">{2}</text>",
            bx + 60.0,
            t + ph / 2.0,
            esc(&self.value_label)
        );
        s.push_str("</svg>\n");
        s
    }
}

/// A grey image in `[0, 1]`, row-major `h × w`, with a caption.
#[derive(Clone, Debug)]
pub struct GreyImage {
    pub caption: String,
    pub w: usize,
    pub h: usize,
    pub pixels: Vec<f32>,
}

/// A grid of images (atoms, kernels, denoising examples), each scaled by `scale` pixels per
/// pixel, embedded as PNG, with a caption under each and a title.
#[derive(Clone, Debug)]
pub struct ImageGrid {
    pub title: String,
    pub cols: usize,
    pub scale: f64,
    pub images: Vec<GreyImage>,
    /// A line under the title saying how values map to grey (units of the figure).
    pub note: String,
}

impl ImageGrid {
    pub fn to_svg(&self) -> String {
        let cols = self.cols.max(1);
        let rows = self.images.len().div_ceil(cols).max(1);
        let cw = self.images.iter().map(|i| i.w).max().unwrap_or(1) as f64 * self.scale;
        let chh = self.images.iter().map(|i| i.h).max().unwrap_or(1) as f64 * self.scale;
        let caption = self.images.iter().any(|i| !i.caption.is_empty());
        let (gap, caph, top) = (8.0, if caption { 16.0 } else { 0.0 }, 52.0);
        let w = (cw + gap) * cols as f64 + gap;
        let w = w.max(360.0).max(text_width(&self.title, 15.0)).max(text_width(&self.note, 11.0));
        let h = top + (chh + gap + caph) * rows as f64 + gap;
        let mut s = svg_open(w, h);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
            w / 2.0,
            esc(&self.title)
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"40\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">{}</text>",
            w / 2.0,
            esc(&self.note)
        );
        for (k, img) in self.images.iter().enumerate() {
            let (r, c) = (k / cols, k % cols);
            let x = gap + c as f64 * (cw + gap);
            let y = top + r as f64 * (chh + gap + caph);
            let png = png_grey(img.w, img.h, &img.pixels);
            let _ = writeln!(
                s,
                "<image x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" preserveAspectRatio=\"none\" \
                 style=\"image-rendering:pixelated\" xlink:href=\"data:image/png;base64,{}\"/>",
                img.w as f64 * self.scale,
                img.h as f64 * self.scale,
                base64(&png)
            );
            if !img.caption.is_empty() {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
                    x + cw / 2.0,
                    y + chh + 13.0,
                    esc(&img.caption)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Rescales `v` to `[0, 1]` by its own min and max (a constant image becomes mid-grey).
pub fn normalise(v: &[f32]) -> Vec<f32> {
    let (lo, hi) =
        v.iter().filter(|x| x.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if lo >= hi {
        return vec![0.5; v.len()];
    }
    v.iter().map(|&x| if x.is_finite() { (x - lo) / (hi - lo) } else { 0.0 }).collect()
}

// --- a minimal PNG encoder (8-bit grey, stored deflate blocks) --------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// An 8-bit greyscale PNG of `pixels` in `[0, 1]` (clamped; NaN → 0).
pub fn png_grey(w: usize, h: usize, pixels: &[f32]) -> Vec<u8> {
    assert_eq!(pixels.len(), w * h, "png_grey: {} pixels for {w}×{h}", pixels.len());
    let mut raw = Vec::with_capacity((w + 1) * h);
    for r in 0..h {
        raw.push(0); // filter: none
        raw.extend(
            pixels[r * w..(r + 1) * w]
                .iter()
                .map(|&p| (if p.is_finite() { p.clamp(0.0, 1.0) } else { 0.0 } * 255.0).round() as u8),
        );
    }
    let mut z = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65535).peekable();
    if raw.is_empty() {
        z.extend([1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        z.push(if chunks.peek().is_none() { 1 } else { 0 });
        let n = c.len() as u16;
        z.extend(n.to_le_bytes());
        z.extend((!n).to_le_bytes());
        z.extend(c);
    }
    z.extend(adler32(&raw).to_be_bytes());
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = vec![];
    ihdr.extend((w as u32).to_be_bytes());
    ihdr.extend((h as u32).to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit, greyscale, deflate, no filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    png
}

pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= c.len() {
                o.push(A[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_adler_and_base64_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{t:?}");
        let t = ticks(12.3, 97.1, 6);
        assert!(t[0] >= 12.3 && *t.last().unwrap() <= 97.1 && t.len() >= 4, "{t:?}");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
