//! Drawing on canvases: the donut, and the panel's rate chart.
//!
//! The donut canvas is sized in *device* pixels (CSS size × devicePixelRatio)
//! and the font size is a whole number of device pixels, so glyphs are crisp
//! on any screen; the 79 × 22 grid is scaled to the largest size that fits
//! the canvas and centred. The cell width is the monospace font's measured
//! advance at the size drawn, so a row drawn as one run of text keeps every
//! glyph in its cell, and the [`Layout`] the viewer reports tells a test
//! exactly where each character is. Brighter glyphs get brighter colours.

use donut_shared::frame::{ALPHABET, NEWLINE_CODE, symbol_code};
use donut_shared::{FRAME_LEN, HEIGHT, WIDTH};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CanvasPattern, CanvasRenderingContext2d, HtmlCanvasElement};

use crate::clock::History;

/// Visible columns of a frame (the last column is the newline).
pub const COLS: usize = WIDTH - 1;
/// Rows of a frame.
pub const ROWS: usize = HEIGHT;
/// Line height as a multiple of the font size: monospace glyphs are about
/// 0.6 em wide, so cells come out about twice as tall as wide, the aspect
/// the donut's projection assumes.
const LINE: f64 = 1.2;
/// Canvas background.
pub const BACKGROUND: &str = "#0b0d12";
/// The font stack for the glyphs.
const FONT_FAMILY: &str = "\"DejaVu Sans Mono\", ui-monospace, Menlo, Consolas, monospace";

/// Where the grid is drawn, in device pixels of the canvas.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Layout {
    /// Left edge of column 0.
    pub origin_x: f64,
    /// Top edge of row 0.
    pub origin_y: f64,
    /// Width of a cell.
    pub cell_w: f64,
    /// Height of a cell.
    pub cell_h: f64,
    /// Font size.
    pub font_px: f64,
    /// devicePixelRatio the canvas was sized for.
    pub dpr: f64,
}

/// Computes the largest grid that fits a `width × height` device-pixel
/// canvas, given the font's advance per pixel of font size (`em_advance`).
pub fn fit(width: f64, height: f64, em_advance: f64, dpr: f64) -> Layout {
    let em_advance = if em_advance.is_finite() && em_advance > 0.1 {
        em_advance
    } else {
        0.6
    };
    let by_width = width / (COLS as f64 * em_advance);
    let by_height = height / (ROWS as f64 * LINE);
    let font_px = by_width.min(by_height).floor().max(4.0);
    let cell_w = font_px * em_advance;
    let cell_h = (font_px * LINE).round();
    Layout {
        origin_x: ((width - COLS as f64 * cell_w) / 2.0).round().max(0.0),
        origin_y: ((height - ROWS as f64 * cell_h) / 2.0).round().max(0.0),
        cell_w,
        cell_h,
        font_px,
        dpr,
    }
}

/// A colour per symbol code, dim to bright.
fn colour(code: u8) -> String {
    let level = f64::from(code.saturating_sub(1)) / 11.0;
    let light = 38.0 + 52.0 * level;
    format!("hsl(38, 95%, {light:.0}%)")
}

/// Glyph patterns: one per symbol code (1 to 12) and column parity.
const PATTERNS: usize = 2 * (NEWLINE_CODE as usize - 1);

/// The pattern of glyph `code` (1 to 12) in column `col`.
fn pattern_index(code: u8, col: usize) -> usize {
    2 * usize::from(code - 1) + col % 2
}

/// The donut canvas.
///
/// Drawing is incremental: the screen remembers the symbol code on every
/// cell of the canvas and a frame repaints only the cells whose code
/// changed (a turning donut changes a few hundred of its 1,738 cells a
/// frame). A cell is repainted with an opaque rectangle (background and
/// glyph) in one of two ways:
///
/// - Where the engine reports the context opaque and low-latency
///   (Chromium 75+), it is filled from a prepared *glyph pattern*: for each
///   glyph and column parity, an offscreen canvas one row high and as wide
///   as the screen where that glyph is drawn in every other column at
///   exactly the positions it has on the screen (same font, same origin,
///   same run of text), repeated down the rows (`createPattern(…,
///   "repeat")`, the context translated to the grid's top so that the
///   pattern's rows are the grid's). A frame costs one path and one `fill`
///   per glyph pattern it uses (at most 24): Chromium spends several
///   microseconds on each `drawImage` of a cell (issue 26, BENCHMARKS.md
///   §9), a `rect` on a path far less.
/// - Elsewhere (Firefox, WebKit: WebKitGTK paints pattern fills at about
///   35 frames a second, `drawImage` at 60) it is copied with `drawImage`
///   from a prepared *atlas*: one canvas as wide as the screen with a row
///   per glyph and column parity, each laid out like a pattern.
///
/// Either way the copy is pixel for pixel (whole device pixels, an
/// integer translation, no scaling), so a glyph is exactly as crisp as
/// when it was drawn with `fillText`; the column parity keeps a
/// neighbour's antialiased edge out of a cell's rectangle. Cells that
/// become blank are filled with the background (one path a frame with
/// the patterns, a `fillRect` per run of them with the atlas). A
/// resize, a new pixel ratio or a new font measure redraws the patterns
/// or the atlas and the whole grid.
///
/// With the patterns the canvas's context is opaque (`alpha: false`: the
/// compositor need not blend it over the page) and low-latency
/// (`desynchronized: true`); elsewhere it is a plain context, so that
/// Firefox and WebKit draw exactly as before issue 26's patterns.
pub struct Screen {
    canvas: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
    layout: Layout,
    size: (u32, u32),
    colours: Vec<String>,
    /// A scratch canvas the glyph patterns are drawn on, or the atlas
    /// (see the type's docs), `None` if it could not be made (the screen
    /// then draws every frame with `fillText`).
    scratch: Option<(HtmlCanvasElement, CanvasRenderingContext2d)>,
    /// Whether cells are filled from glyph patterns (else copied from the
    /// atlas): the context is low-latency.
    use_patterns: bool,
    /// The glyph patterns, indexed by [`pattern_index`]; empty if they
    /// are not used or could not be made.
    patterns: Vec<CanvasPattern>,
    /// Left edge of each column and the right edge of the last, in whole
    /// device pixels.
    edges: [f64; COLS + 1],
    /// The symbol code on every cell of the canvas (0: blank), or `None`
    /// when the canvas must be redrawn whole.
    shown: Option<[u8; ROWS * COLS]>,
}

/// The 2D context of `canvas`.
pub fn context(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, JsValue> {
    context_with(canvas, &JsValue::UNDEFINED)
}

/// The donut canvas's 2D context: opaque, and low-latency where the
/// engine offers it (see [`Screen`]).
fn screen_context(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, JsValue> {
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"alpha".into(), &false.into())?;
    js_sys::Reflect::set(&options, &"desynchronized".into(), &true.into())?;
    context_with(canvas, &options)
}

/// Whether the engine reports `ctx` as both opaque and low-latency
/// (`getContextAttributes()` gives `alpha: false, desynchronized: true`:
/// Chromium 75+; WebKit echoes `desynchronized` but reports no `alpha`,
/// Firefox reports `desynchronized: false`); false where it lacks the
/// method. It picks the glyph patterns (see [`Screen`]).
fn low_latency(ctx: &CanvasRenderingContext2d) -> bool {
    let Ok(get) = js_sys::Reflect::get(ctx, &"getContextAttributes".into()) else {
        return false;
    };
    let Some(get) = get.dyn_ref::<js_sys::Function>() else {
        return false;
    };
    let Ok(attrs) = get.call0(ctx) else {
        return false;
    };
    let flag = |name: &str| js_sys::Reflect::get(&attrs, &name.into()).map(|v| v.as_bool());
    flag("desynchronized").is_ok_and(|d| d == Some(true))
        && flag("alpha").is_ok_and(|a| a == Some(false))
}

fn context_with(
    canvas: &HtmlCanvasElement,
    options: &JsValue,
) -> Result<CanvasRenderingContext2d, JsValue> {
    canvas
        .get_context_with_context_options("2d", options)?
        .ok_or_else(|| JsValue::from_str("no 2d context"))?
        .dyn_into::<CanvasRenderingContext2d>()
        .map_err(|_| JsValue::from_str("not a 2d context"))
}

/// The column edges of `l` in whole device pixels: column `c` covers
/// `[edges[c], edges[c + 1])`.
pub fn column_edges(l: &Layout) -> [f64; COLS + 1] {
    let mut edges = [0.0; COLS + 1];
    for (c, e) in edges.iter_mut().enumerate() {
        *e = (l.origin_x + c as f64 * l.cell_w).round();
    }
    edges
}

/// The symbol codes of the visible cells of a frame (0 for a space or any
/// byte outside the alphabet), row-major.
pub fn cell_codes(text: &[u8; FRAME_LEN]) -> [u8; ROWS * COLS] {
    let mut codes = [0u8; ROWS * COLS];
    for row in 0..ROWS {
        for col in 0..COLS {
            let code = symbol_code(text[row * WIDTH + col]).unwrap_or(0);
            codes[row * COLS + col] = if code < NEWLINE_CODE { code } else { 0 };
        }
    }
    codes
}

/// Runs of cells to blank, as `(row, first, end)` (columns `first..end`).
pub type Blanks = Vec<(usize, usize, usize)>;
/// Cells to draw, as `(row, col, code)`.
pub type Glyphs = Vec<(usize, usize, u8)>;

/// What repaints `now` over `before` (`None`: a blank canvas): each row's
/// runs of cells to blank, and the cells to draw.
pub fn changes(before: Option<&[u8; ROWS * COLS]>, now: &[u8; ROWS * COLS]) -> (Blanks, Glyphs) {
    let mut blanks = Vec::new();
    let mut glyphs = Vec::new();
    for row in 0..ROWS {
        let mut run: Option<usize> = None;
        for col in 0..=COLS {
            let i = row * COLS + col;
            let blank = col < COLS && now[i] == 0 && before.is_some_and(|b| b[i] != 0);
            match (blank, run) {
                (true, None) => run = Some(col),
                (false, Some(first)) => {
                    blanks.push((row, first, col));
                    run = None;
                }
                _ => {}
            }
            if col < COLS && now[i] != 0 && before.is_none_or(|b| b[i] != now[i]) {
                glyphs.push((row, col, now[i]));
            }
        }
    }
    (blanks, glyphs)
}

impl Screen {
    /// Wraps the donut canvas.
    pub fn new(canvas: HtmlCanvasElement) -> Result<Self, JsValue> {
        // A throwaway canvas tells whether the engine grants the options
        // (a canvas's context cannot change once made): elsewhere the
        // screen draws exactly as before them, with a plain context.
        let use_patterns = canvas
            .owner_document()
            .and_then(|d| d.create_element("canvas").ok())
            .and_then(|e| e.dyn_into::<HtmlCanvasElement>().ok())
            .and_then(|c| screen_context(&c).ok())
            .is_some_and(|probe| low_latency(&probe));
        let ctx = if use_patterns {
            screen_context(&canvas)?
        } else {
            context(&canvas)?
        };
        let scratch = canvas
            .owner_document()
            .and_then(|d| d.create_element("canvas").ok())
            .and_then(|e| e.dyn_into::<HtmlCanvasElement>().ok())
            .and_then(|c| context(&c).ok().map(|x| (c, x)));
        Ok(Self {
            canvas,
            ctx,
            layout: Layout::default(),
            size: (0, 0),
            colours: (0..=12).map(colour).collect(),
            scratch,
            use_patterns,
            patterns: Vec::new(),
            edges: [0.0; COLS + 1],
            shown: None,
        })
    }

    /// The current layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The canvas element.
    pub fn canvas(&self) -> &HtmlCanvasElement {
        &self.canvas
    }

    /// Resizes the backing store to the element's size × `dpr`. Returns
    /// whether anything changed (and so a redraw is needed).
    pub fn fit(&mut self, dpr: f64) -> bool {
        let (w, h, dpr) = backing_size(&self.canvas, dpr);
        if (w, h) == self.size && dpr == self.layout.dpr {
            return false;
        }
        self.size = (w, h);
        self.canvas.set_width(w);
        self.canvas.set_height(h);
        self.ctx.set_font(&format!("100px {FONT_FAMILY}"));
        let advance = self
            .ctx
            .measure_text("M")
            .map(|m| m.width() / 100.0)
            .unwrap_or(0.6);
        let mut layout = fit(f64::from(w), f64::from(h), advance, dpr);
        // Fonts hint their advance at each size: use the advance at the
        // size drawn, so runs of text keep to the grid.
        self.ctx
            .set_font(&format!("{}px {FONT_FAMILY}", layout.font_px));
        if let Ok(m) = self.ctx.measure_text("M")
            && m.width() > 0.0
            && m.width() * COLS as f64 <= f64::from(w)
        {
            layout.cell_w = m.width();
            layout.origin_x = ((f64::from(w) - COLS as f64 * layout.cell_w) / 2.0).round();
        }
        self.layout = layout;
        self.edges = column_edges(&layout);
        self.shown = None;
        if self.use_patterns {
            self.prepare_patterns();
        } else {
            self.prepare_atlas();
        }
        true
    }

    /// Sets the glyphs' font and alignment on `ctx`.
    fn set_text_style(&self, ctx: &CanvasRenderingContext2d) {
        ctx.set_font(&format!("{}px {FONT_FAMILY}", self.layout.font_px));
        ctx.set_text_align("left");
        ctx.set_text_baseline("middle");
    }

    /// Draws the glyph patterns for the current layout: pattern
    /// [`pattern_index`]`(code, parity)` is one row of the grid, glyph
    /// `code` in the columns of that parity, each at its place on the
    /// screen, on the background.
    fn prepare_patterns(&mut self) {
        self.patterns.clear();
        let Some((scratch, sctx)) = &self.scratch else {
            return;
        };
        let l = self.layout;
        let (w, h) = (self.size.0, (l.cell_h as u32).max(1));
        scratch.set_width(w);
        scratch.set_height(h);
        let mut run = String::with_capacity(COLS);
        for code in 1..NEWLINE_CODE {
            let glyph = char::from(ALPHABET[usize::from(code)]);
            for parity in 0..2 {
                sctx.set_fill_style_str(BACKGROUND);
                sctx.fill_rect(0.0, 0.0, f64::from(w), f64::from(h));
                self.set_text_style(sctx);
                sctx.set_fill_style_str(&self.colours[usize::from(code)]);
                run.clear();
                run.extend((parity..COLS).map(|c| if c % 2 == parity { glyph } else { ' ' }));
                let x = l.origin_x + parity as f64 * l.cell_w;
                let _ = sctx.fill_text(&run, x, 0.5 * l.cell_h);
                match sctx.create_pattern_with_html_canvas_element(scratch, "repeat") {
                    Ok(Some(p)) => self.patterns.push(p),
                    _ => {
                        self.patterns.clear();
                        return;
                    }
                }
            }
        }
    }

    /// Draws a frame of ASCII text, repainting only the cells that differ
    /// from what the canvas shows (see the type's docs).
    pub fn draw(&mut self, text: &[u8; FRAME_LEN]) {
        if self.patterns.len() == PATTERNS {
            self.draw_patterns(text);
        } else if !self.use_patterns && self.scratch.is_some() {
            self.draw_atlas(text);
        } else {
            self.draw_text(text);
        }
    }

    /// Draws the atlas for the current layout: row [`pattern_index`]`(code,
    /// parity)` holds glyph `code` in the columns of that parity, each at
    /// its place on the screen, on the background.
    fn prepare_atlas(&mut self) {
        let Some((atlas, actx)) = &self.scratch else {
            return;
        };
        let l = self.layout;
        let (w, h) = (self.size.0, (PATTERNS as f64 * l.cell_h) as u32);
        atlas.set_width(w);
        atlas.set_height(h.max(1));
        actx.set_fill_style_str(BACKGROUND);
        actx.fill_rect(0.0, 0.0, f64::from(w), f64::from(h));
        self.set_text_style(actx);
        let mut run = String::with_capacity(COLS);
        for code in 1..NEWLINE_CODE {
            let glyph = char::from(ALPHABET[usize::from(code)]);
            actx.set_fill_style_str(&self.colours[usize::from(code)]);
            for parity in 0..2 {
                run.clear();
                run.extend((parity..COLS).map(|c| if c % 2 == parity { glyph } else { ' ' }));
                let row = pattern_index(code, parity);
                let x = l.origin_x + parity as f64 * l.cell_w;
                let y = (row as f64 + 0.5) * l.cell_h;
                let _ = actx.fill_text(&run, x, y);
            }
        }
    }

    /// Fills the background where the canvas must be redrawn whole, and
    /// the cells that become blank; returns the cells to draw.
    fn blank(&self, now: &[u8; ROWS * COLS]) -> Glyphs {
        let ctx = &self.ctx;
        let l = self.layout;
        ctx.set_fill_style_str(BACKGROUND);
        if self.shown.is_none() {
            ctx.fill_rect(0.0, 0.0, f64::from(self.size.0), f64::from(self.size.1));
        }
        let (blanks, glyphs) = changes(self.shown.as_ref(), now);
        if self.use_patterns && !blanks.is_empty() {
            ctx.begin_path();
        }
        for &(row, first, end) in &blanks {
            let (x0, x1) = (self.edges[first], self.edges[end]);
            let y = l.origin_y + row as f64 * l.cell_h;
            if self.use_patterns {
                ctx.rect(x0, y, x1 - x0, l.cell_h);
            } else {
                ctx.fill_rect(x0, y, x1 - x0, l.cell_h);
            }
        }
        if self.use_patterns && !blanks.is_empty() {
            ctx.fill();
        }
        glyphs
    }

    /// Copies each changed cell from the atlas.
    fn draw_atlas(&mut self, text: &[u8; FRAME_LEN]) {
        let Some((atlas, _)) = &self.scratch else {
            return;
        };
        let l = self.layout;
        let now = cell_codes(text);
        for (row, col, code) in self.blank(&now) {
            let (x0, x1) = (self.edges[col], self.edges[col + 1]);
            let sy = pattern_index(code, col) as f64 * l.cell_h;
            let dy = l.origin_y + row as f64 * l.cell_h;
            let _ = self
                .ctx
                .draw_image_with_html_canvas_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
                    atlas,
                    x0,
                    sy,
                    x1 - x0,
                    l.cell_h,
                    x0,
                    dy,
                    x1 - x0,
                    l.cell_h,
                );
        }
        self.shown = Some(now);
    }

    /// Fills the changed cells from the glyph patterns, one path and one
    /// `fill` per pattern.
    fn draw_patterns(&mut self, text: &[u8; FRAME_LEN]) {
        let ctx = &self.ctx;
        let l = self.layout;
        let now = cell_codes(text);
        let mut glyphs = self.blank(&now);
        // Row r's top is at y = r × cell_h from here, where each pattern's
        // row starts over.
        let _ = ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, l.origin_y);
        glyphs.sort_unstable_by_key(|&(_, col, code)| pattern_index(code, col));
        for group in glyphs.chunk_by(|a, b| pattern_index(a.2, a.1) == pattern_index(b.2, b.1)) {
            ctx.begin_path();
            for &(row, col, _) in group {
                let (x0, x1) = (self.edges[col], self.edges[col + 1]);
                ctx.rect(x0, row as f64 * l.cell_h, x1 - x0, l.cell_h);
            }
            let (_, col, code) = group[0];
            ctx.set_fill_style_canvas_pattern(&self.patterns[pattern_index(code, col)]);
            ctx.fill();
        }
        let _ = ctx.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
        self.shown = Some(now);
    }

    /// Draws a whole frame with text: one `fillText` per row and glyph
    /// colour, each a run with the other cells blanked, so every glyph
    /// lands on its cell because the cell width is the font's own advance
    /// at this size. Only when there are neither glyph patterns nor an
    /// atlas.
    fn draw_text(&self, text: &[u8; FRAME_LEN]) {
        let ctx = &self.ctx;
        let l = self.layout;
        ctx.set_fill_style_str(BACKGROUND);
        ctx.fill_rect(0.0, 0.0, f64::from(self.size.0), f64::from(self.size.1));
        self.set_text_style(ctx);
        let mut run = String::with_capacity(COLS);
        for code in 1..NEWLINE_CODE {
            let glyph = char::from(ALPHABET[usize::from(code)]);
            let mut styled = false;
            for row in 0..ROWS {
                let cells = &text[row * WIDTH..row * WIDTH + COLS];
                let is_code = |b: &u8| symbol_code(*b) == Some(code);
                let (Some(first), Some(last)) = (
                    cells.iter().position(is_code),
                    cells.iter().rposition(is_code),
                ) else {
                    continue;
                };
                run.clear();
                run.extend(
                    cells[first..=last]
                        .iter()
                        .map(|b| if is_code(b) { glyph } else { ' ' }),
                );
                if !styled {
                    ctx.set_fill_style_str(&self.colours[usize::from(code)]);
                    styled = true;
                }
                let x = l.origin_x + first as f64 * l.cell_w;
                let y = l.origin_y + (row as f64 + 0.5) * l.cell_h;
                let _ = ctx.fill_text(&run, x, y);
            }
        }
    }
}

/// The panel's chart of the fleet's frames/s over the last minute.
pub struct Chart {
    canvas: HtmlCanvasElement,
    ctx: CanvasRenderingContext2d,
}

impl Chart {
    /// Wraps the chart canvas.
    pub fn new(canvas: HtmlCanvasElement) -> Result<Self, JsValue> {
        let ctx = context(&canvas)?;
        Ok(Self { canvas, ctx })
    }

    /// Draws `history` scaled to its peak.
    pub fn draw(&self, history: &History, dpr: f64) {
        let (wi, hi, dpr) = backing_size(&self.canvas, dpr);
        let (w, h) = (f64::from(wi), f64::from(hi));
        if self.canvas.width() != wi || self.canvas.height() != hi {
            self.canvas.set_width(wi);
            self.canvas.set_height(hi);
        }
        let ctx = &self.ctx;
        ctx.clear_rect(0.0, 0.0, w, h);
        let peak = f64::from(history.peak());
        let n = History::LEN as f64 - 1.0;
        let a = ChartArea::new(h, dpr);
        let pad = a.pad;
        let offset = (History::LEN - history.samples().len()) as f64;
        let point = |i: usize, v: u32| {
            let x = (offset + i as f64) / n * (w - 2.0 * pad) + pad;
            let y = a.bottom - f64::from(v) / peak * (a.bottom - a.top);
            (x, y)
        };
        ctx.begin_path();
        for (i, v) in history.samples().enumerate() {
            let (x, y) = point(i, v);
            if i == 0 {
                ctx.move_to(x, y);
            } else {
                ctx.line_to(x, y);
            }
        }
        ctx.set_stroke_style_str("hsl(38, 95%, 60%)");
        ctx.set_line_width(1.5 * dpr);
        ctx.stroke();
        ctx.set_fill_style_str("rgba(200, 200, 210, 0.8)");
        ctx.set_font(&format!("{}px sans-serif", a.label_px));
        ctx.set_text_align("left");
        ctx.set_text_baseline("top");
        let _ = ctx.fill_text(
            &format!("peak {}", crate::panel::group(u64::from(history.peak()))),
            pad,
            pad,
        );
    }
}

/// Where the chart draws, in device pixels: the "peak" label has the band
/// at the top to itself and the line stays below it (the peak sample at
/// `top`), so the sawtooth never runs through the label.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ChartArea {
    pad: f64,
    /// The label's font size (its line box is taken as this high).
    label_px: f64,
    /// The line's highest point (the peak).
    top: f64,
    /// The line's lowest point (zero).
    bottom: f64,
}

impl ChartArea {
    fn new(h: f64, dpr: f64) -> Self {
        let pad = 2.0 * dpr;
        // Scales with the canvas (its CSS height follows the panel's font
        // size), never under 10 CSS pixels.
        let label_px = (h / 6.0).max(10.0 * dpr).round();
        let top = (pad + label_px + pad).min(h / 2.0);
        Self {
            pad,
            label_px,
            top,
            bottom: (h - pad).max(top),
        }
    }
}

/// The backing-store size of `canvas` in device pixels (its CSS size ×
/// `dpr`, at least 1×1) and the device pixel ratio used, 1 when `dpr` is
/// not a positive number.
fn backing_size(canvas: &HtmlCanvasElement, dpr: f64) -> (u32, u32, f64) {
    let dpr = if dpr.is_finite() && dpr > 0.0 {
        dpr
    } else {
        1.0
    };
    let px = |css: i32| (f64::from(css) * dpr).round().max(1.0) as u32;
    (px(canvas.client_width()), px(canvas.client_height()), dpr)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn grid_fits_and_is_centred() {
        for (w, h) in [
            (800.0, 600.0),
            (2560.0, 1440.0),
            (390.0, 844.0),
            (100.0, 50.0),
        ] {
            let l = fit(w, h, 0.6, 1.0);
            assert!(l.font_px >= 4.0);
            if l.font_px > 4.0 {
                assert!(l.origin_x + COLS as f64 * l.cell_w <= w + 0.5, "{w}x{h}");
                assert!(l.origin_y + ROWS as f64 * l.cell_h <= h + 0.5, "{w}x{h}");
                let slack_x = w - COLS as f64 * l.cell_w;
                assert!((l.origin_x - slack_x / 2.0).abs() <= 0.5);
            }
            assert_eq!(l.font_px.fract(), 0.0, "whole device pixels");
        }
    }

    #[test]
    fn bad_font_metrics_fall_back() {
        let l = fit(800.0, 600.0, f64::NAN, 2.0);
        assert!(l.cell_w > 0.0 && l.cell_w.is_finite());
    }

    #[test]
    fn the_chart_line_stays_below_its_peak_label() {
        for (h, dpr) in [(64.0, 1.0), (128.0, 2.0), (64.0 * 2.5, 1.0), (40.0, 1.0)] {
            let a = ChartArea::new(h, dpr);
            assert!(a.top > a.pad + a.label_px || a.top == h / 2.0, "{a:?}");
            assert!(a.bottom > a.top && a.bottom <= h, "{a:?}");
            assert!(a.label_px >= 10.0 * dpr, "{a:?}");
        }
        // The label of a 64 px chart at ratio 1: 11 px, line from 15 px.
        let a = ChartArea::new(64.0, 1.0);
        assert_eq!((a.label_px, a.top, a.bottom), (11.0, 15.0, 62.0));
    }

    #[test]
    fn a_frame_repaints_only_the_cells_that_changed() {
        let mut a = [0u8; FRAME_LEN];
        let mut b = [0u8; FRAME_LEN];
        donut_shared::render(100, &mut a);
        let first = cell_codes(&a);
        // On a blank canvas: every glyph, nothing to blank.
        let (blanks, glyphs) = changes(None, &first);
        assert!(blanks.is_empty());
        assert_eq!(glyphs.len(), first.iter().filter(|c| **c != 0).count());
        // Two seconds of frames: each repaints exactly the cells that
        // differ, and after it the canvas holds the new frame.
        let (mut canvas, mut changed, mut lit) = (first, 0, 0);
        for f in 101..221 {
            donut_shared::render(f, &mut b);
            let now = cell_codes(&b);
            let (blanks, glyphs) = changes(Some(&canvas), &now);
            let differ = canvas.iter().zip(&now).filter(|(x, y)| x != y).count();
            for (row, first, end) in &blanks {
                assert!(first < end && *end <= COLS);
                for c in *first..*end {
                    assert_ne!(canvas[row * COLS + c], 0, "a blank cell blanked again");
                    canvas[row * COLS + c] = 0;
                }
            }
            for (row, col, code) in &glyphs {
                assert_ne!(canvas[row * COLS + col], *code, "an unchanged cell redrawn");
                canvas[row * COLS + col] = *code;
            }
            assert_eq!(canvas, now);
            let blanked: usize = blanks.iter().map(|(_, f, e)| e - f).sum();
            assert_eq!(blanked + glyphs.len(), differ);
            changed += differ;
            lit += now.iter().filter(|c| **c != 0).count();
        }
        eprintln!(
            "cells changed a frame: {} of {} lit",
            changed / 120,
            lit / 120
        );
        assert!(changed < lit, "{changed} of {lit}");
        // Nothing changes: nothing is drawn.
        assert_eq!(changes(Some(&canvas), &canvas), (Vec::new(), Vec::new()));
    }

    #[test]
    fn cells_are_whole_device_pixels_that_tile_the_grid() {
        for (w, h, dpr) in [
            (1280.0, 668.0, 1.0),
            (2560.0, 1336.0, 2.0),
            (390.0, 300.0, 3.0),
        ] {
            let l = fit(w, h, 0.6021, dpr);
            let e = column_edges(&l);
            for c in 0..COLS {
                assert_eq!(e[c].fract(), 0.0);
                assert!(e[c + 1] > e[c], "column {c} is empty at {w}x{h}");
                // Each cell is the glyph's place to within half a pixel.
                assert!((e[c] - (l.origin_x + c as f64 * l.cell_w)).abs() <= 0.5);
            }
        }
        // Codes: a space and the newline are blank, glyphs 1 to 12.
        let mut text = [b' '; FRAME_LEN];
        text[0] = b'@';
        text[1] = b'.';
        text[WIDTH - 1] = b'\n';
        let codes = cell_codes(&text);
        assert_eq!(&codes[..3], &[12, 1, 0]);
        assert_eq!(codes.len(), ROWS * COLS);
    }

    #[test]
    fn colours_brighten_with_luminance() {
        assert_eq!(colour(1), "hsl(38, 95%, 38%)");
        assert_eq!(colour(12), "hsl(38, 95%, 90%)");
    }
}
