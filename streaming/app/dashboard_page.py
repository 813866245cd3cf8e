"""The dashboard's page: one :class:`DashboardSession` per browser (see :mod:`.dashboard`).

Each session polls the shared :class:`~.dashboard_store.ProductStore` every
:data:`REFRESH_MS` and redraws only the products whose version changed. Models the browser
test reads carry names (``reconstruction_source``, ``potentiostat_source``, ``pattern_plot``,
``selected_two_theta``, ...).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from bokeh.events import Tap
from bokeh.layouts import column, row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    DataTable,
    Div,
    HoverTool,
    LinearColorMapper,
    RangeSlider,
    ScaleBar,
    Select,
    Slider,
    Span,
    TableColumn,
    Toggle,
    Whisker,
)
from bokeh.plotting import figure

from streaming.wire.products import Product

from .dashboard_store import ProductStore

__all__ = ["REFRESH_MS", "DashboardSession"]

REFRESH_MS = 500  # the analyses publish every 0.5 s at most: redrawing faster would find nothing new
_IMAGE_SIZE = 330
_LATEST = "latest"


def _image_figure(title: str, x_label: str, y_label: str, name: str, *, scale_bar: bool = False) -> tuple[Any, ...]:
    """A figure with an image glyph, its colour mapper and colour bar; (figure, source, mapper)."""
    plot = figure(title=title, width=_IMAGE_SIZE + 80, height=_IMAGE_SIZE, x_axis_label=x_label, y_axis_label=y_label,
                  match_aspect=scale_bar, tools="pan,wheel_zoom,reset,save", name=f"{name}_plot")  # fmt: skip
    source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []}, name=f"{name}_source")
    mapper = LinearColorMapper(palette="Viridis256")
    plot.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper, source=source)
    plot.add_layout(ColorBar(color_mapper=mapper, width=12), "right")
    if scale_bar:
        plot.add_layout(ScaleBar(range=plot.x_range, unit="mm", location="bottom_left"))
    plot.grid.visible = False
    return plot, source, mapper


def _curve_figure(title: str, x_label: str, y_label: str, name: str, **options: Any) -> Any:
    options = {"width": 420, "height": 260, "tools": "pan,wheel_zoom,box_zoom,reset,save", **options}
    return figure(title=title, x_axis_label=x_label, y_axis_label=y_label, name=name, **options)


class DashboardSession:
    """One browser's page (see the module docstring)."""

    def __init__(self, store: ProductStore, document: Any) -> None:
        self.store = store
        self.document = document
        self.channel: int | None = None  # None: the analysis' default 2θ
        self._seen: dict[str, int] = {}
        self._two_theta = np.zeros(0)
        self._build()
        document.title = "operando-stream"
        document.add_root(self.layout)
        document.add_periodic_callback(self.update, REFRESH_MS)

    # -- the page ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.status = Div(text="waiting for the analyses' products...", name="status")
        self.selected = Div(text="2θ: (the analysis' default)", name="selected_two_theta")
        self.pause = Toggle(label="Pause updates", button_type="default", name="pause")
        self.colour_range = RangeSlider(start=0, end=100, value=(1, 99.5), step=0.5, title="colour range (percentile)",
                                        width=260)  # fmt: skip
        self.colour_range.on_change("value", lambda _attr, _old, _new: self._redraw_all())
        self.slider = Slider(start=0, end=1, value=0, step=1, title="2θ channel", width=300, name="two_theta_slider")
        # where the user lets go, not every channel the slider passes on the way
        self.slider.on_change("value_throttled", lambda _a, _o, new: self.select_channel(int(new)))

        self.pattern_plot = _curve_figure("Patterns (scan under way)", "2θ (deg)", "intensity", "pattern_plot",
                                          tools="tap,pan,wheel_zoom,box_zoom,reset,save")  # fmt: skip
        self.pattern_source = ColumnDataSource({"two_theta": [], "latest": [], "mean": []}, name="pattern_source")
        self.pattern_plot.line("two_theta", "mean", source=self.pattern_source, legend_label="mean", color="navy")
        self.pattern_plot.line("two_theta", "latest", source=self.pattern_source, legend_label="latest",
                               color="orange", alpha=0.7)  # fmt: skip
        self.marker = Span(location=0, dimension="height", line_color="red", line_dash="dashed")
        self.pattern_plot.add_layout(self.marker)
        self.pattern_plot.on_event(Tap, lambda event: self.select_two_theta(event.x))

        self.sinogram_plot, self.sinogram_source, self.sinogram_mapper = _image_figure(
            "Sinogram at 2θ", "translation (mm)", "angle (deg)", "sinogram"
        )
        self.recon_plot, self.recon_source, self.recon_mapper = _image_figure(
            "Reconstruction at 2θ", "x (mm)", "y (mm)", "reconstruction", scale_bar=True
        )
        self.scan_select = Select(title="scan (maps)", value=_LATEST, options=[_LATEST], width=200)
        self.phase_select = Select(title="phase", value="", options=[], width=200)
        for widget in (self.scan_select, self.phase_select):
            widget.on_change("value", lambda _attr, _old, _new: self._draw_maps(force=True))
        self.phase_plot, self.phase_source, self.phase_mapper = _image_figure(
            "Phase map", "x (mm)", "y (mm)", "phase", scale_bar=True
        )
        self.lattice_plot, self.lattice_source, self.lattice_mapper = _image_figure(
            "Lattice map (Å)", "x (mm)", "y (mm)", "lattice", scale_bar=True
        )
        self.series_plot = _curve_figure("Mean lattice per scan", "capacity (mAh)", "lattice (Å)", "series_plot")
        self.series_source = ColumnDataSource({"capacity": [], "lattice": [], "voltage": []}, name="series_source")
        self.series_plot.scatter("capacity", "lattice", source=self.series_source, size=8)
        tooltips = [
            ("capacity", "@capacity{0.0} mAh"),
            ("voltage", "@voltage{0.000} V"),
            ("lattice", "@lattice{0.0000} Å"),
        ]
        self.series_plot.add_tools(HoverTool(tooltips=tooltips))
        self.series_plot.line("capacity", "lattice", source=self.series_source)

        self.potentiostat_source = ColumnDataSource({"minutes": [], "voltage": [], "current_ma": [], "capacity": []},
                                                    name="potentiostat_source")  # fmt: skip
        self.potentiostat_status = Div(text="", name="potentiostat_status")
        potentiostat = []
        for key, label, colour in (("voltage", "voltage (V)", "firebrick"), ("current_ma", "current (mA)", "green"),
                                   ("capacity", "capacity (mAh)", "purple")):  # fmt: skip
            plot = _curve_figure(f"Potentiostat {label}", "time (min)", label, f"potentiostat_{key}", height=200)
            plot.line("minutes", key, source=self.potentiostat_source, color=colour)
            potentiostat.append(plot)

        self.spectrum_source = ColumnDataSource({"energy": [], "counts": []}, name="spectrum_source")
        self.spectrum_plot = _curve_figure("XCS spectrum", "energy (keV)", "counts", "spectrum_plot")
        self.spectrum_plot.line("energy", "counts", source=self.spectrum_source)
        self.emf_plot, self.emf_source, self.emf_mapper = _image_figure("EMF map", "pixel", "pixel", "emf")
        self.sigma_plot, self.sigma_source, self.sigma_mapper = _image_figure("EMF σ", "pixel", "pixel", "emf_sigma")
        self.emf_series_source = ColumnDataSource({"capacity": [], "emf": [], "low": [], "high": []},
                                                  name="emf_series_source")  # fmt: skip
        self.emf_series_plot = _curve_figure("Cathode EMF", "capacity (mAh)", "EMF", "emf_series_plot")
        self.emf_series_plot.scatter("capacity", "emf", source=self.emf_series_source, size=6)
        self.emf_series_plot.add_layout(Whisker(base="capacity", upper="high", lower="low",
                                                source=self.emf_series_source))  # fmt: skip
        self.xct_plot, self.xct_source, self.xct_mapper = _image_figure("XCT slice (μ, 1/m)", "x (mm)", "y (mm)",
                                                                        "xct", scale_bar=True)  # fmt: skip
        self.outline_source = ColumnDataSource({"x": [], "y": []}, name="outline_source")
        self.xct_plot.scatter("x", "y", source=self.outline_source, size=2, color="red", alpha=0.6)

        columns = ("stream", "received", "missing", "late", "invalid", "rate")
        self.diagnostics_source = ColumnDataSource({key: [] for key in columns}, name="diagnostics_source")
        table = DataTable(source=self.diagnostics_source, width=520, height=120, index_position=None,
                          columns=[TableColumn(field=k, title=t) for k, t in (
                              ("stream", "stream"), ("received", "received"), ("missing", "missing"), ("late", "late"),
                              ("invalid", "invalid"), ("rate", "frames/s"))])  # fmt: skip
        self.diagnostics = Div(text="", name="diagnostics")
        self.layout = column(
            Div(text="<h2>operando-stream: live analyses</h2>"),
            row(self.status, self.pause, self.colour_range),
            Div(text="<h3>XRD-CT</h3>"), row(self.selected, self.slider),
            row(self.pattern_plot, self.sinogram_plot, self.recon_plot),
            row(column(self.scan_select, self.phase_select), self.phase_plot, self.lattice_plot, self.series_plot),
            Div(text="<h3>Potentiostat</h3>"), self.potentiostat_status, row(*potentiostat),
            Div(text="<h3>XCS-CT</h3>"), row(self.spectrum_plot, self.emf_plot, self.sigma_plot),
            row(self.emf_series_plot, self.xct_plot),
            Div(text="<h3>Diagnostics</h3>"), row(table, self.diagnostics),
        )  # fmt: skip

    # -- the user's choices --------------------------------------------------------------------

    def select_two_theta(self, two_theta_deg: float | None) -> None:
        """The channel nearest ``two_theta_deg`` (a click on the patterns)."""
        if two_theta_deg is not None and self._two_theta.size:
            self.select_channel(int(np.argmin(np.abs(self._two_theta - two_theta_deg))))

    def select_channel(self, channel: int) -> None:
        if channel == self.channel or not 0 <= channel < max(1, self._two_theta.size):
            return
        if self.channel is not None:
            self.store.release_channel(self.channel)
        self.channel = channel
        self.store.request_channel(channel)
        if self.slider.value != channel:
            self.slider.value = channel
        self._show_channel()
        self._seen.pop("scan", None)
        self._draw_scan()

    def close(self) -> None:
        """The browser left: no longer ask for its channel."""
        if self.channel is not None:
            self.store.release_channel(self.channel)
            self.channel = None

    # -- updates -----------------------------------------------------------------------------

    def update(self) -> None:
        if self.pause.active:
            return
        self._draw_patterns()
        self._draw_scan()
        self._draw_maps()
        for name, draw in (("xrdct.series", self._draw_series), ("potentiostat", self._draw_potentiostat),
                           ("xcs.spectrum", self._draw_spectrum), ("xcs.emf", self._draw_emf),
                           ("xcs.series", self._draw_emf_series), ("xct.slice", self._draw_xct),
                           ("diagnostics", self._draw_diagnostics)):  # fmt: skip
            product = self._new(name, name)
            if product is not None:
                draw(product)

    def _redraw_all(self) -> None:
        self._seen.clear()
        self.update()

    def _new(self, key: str, name: str) -> Product | None:
        """The product ``name`` if it changed since this session drew it as ``key``."""
        version, product = self.store.get(name)
        if product is None or self._seen.get(key) == version:
            return None
        self._seen[key] = version
        return product

    def _colours(self, mapper: LinearColorMapper, image: np.ndarray) -> None:
        finite = image[np.isfinite(image)]
        if finite.size:
            low, high = np.percentile(finite, self.colour_range.value)
            mapper.low, mapper.high = float(low), float(high if high > low else low + 1e-12)

    @staticmethod
    def _image(source: ColumnDataSource, image: np.ndarray, extent: tuple[float, float, float, float]) -> None:
        """``image`` drawn over ``extent``: (x of the left edge, y of the bottom, width, height)."""
        x0, y0, width, height = extent
        source.data = {"image": [np.asarray(image, np.float32)], "x": [x0], "y": [y0], "dw": [width], "dh": [height]}

    def _show_channel(self) -> None:
        channel = self.channel if self.channel is not None else self._default_channel()
        if channel is not None and channel < self._two_theta.size:
            self.marker.location = float(self._two_theta[channel])
            who = "chosen" if self.channel is not None else "the analysis' default"
            self.selected.text = f"2θ: {self._two_theta[channel]:.4f}° (channel {channel}, {who})"

    def _default_channel(self) -> int | None:
        _, patterns = self.store.get("xrdct.patterns")
        return None if patterns is None else int(patterns.values.get("default_channel", 0))

    def _draw_patterns(self) -> None:
        product = self._new("patterns", "xrdct.patterns")
        if product is None:
            return
        self._two_theta = np.asarray(product.arrays["two_theta_deg"], np.float64)
        if "mean" in product.arrays:
            self.pattern_source.data = {"two_theta": self._two_theta, "latest": product.arrays["latest"],
                                        "mean": product.arrays["mean"]}  # fmt: skip
        self.slider.end = max(1, self._two_theta.size - 1)
        if self.channel is None:  # the default's place (a set value calls no throttled callback)
            self.slider.value = int(product.values.get("default_channel", 0))
        self._show_channel()

    def _draw_scan(self) -> None:
        channel = self.channel if self.channel is not None else self._default_channel()
        if channel is None:
            return
        product = self._new("scan", f"xrdct.scan@{channel}")
        if product is None:
            return
        values, arrays = product.values, product.arrays
        at = f"{values['two_theta_deg']:.4f}° (channel {values['channel']})"
        self.sinogram_plot.title.text, self.recon_plot.title.text = f"Sinogram at 2θ {at}", f"Reconstruction at 2θ {at}"
        (t0, t1), (a0, a1) = values["translation_range_mm"], values["angle_range_deg"]
        step_deg = (a1 - a0) / max(1, values["n_angles"] - 1)
        step_mm = values["pixel_size_mm"]  # pixels centred on their positions
        sinogram = np.where(arrays["filled"] > 0, arrays["sinogram"], np.nan)
        self._image(self.sinogram_source, sinogram, (t0 - step_mm / 2, a0 - step_deg / 2, t1 - t0 + step_mm,
                                                     a1 - a0 + step_deg))  # fmt: skip
        self._colours(self.sinogram_mapper, sinogram)
        if "reconstruction" in arrays:
            image = arrays["reconstruction"]
            size = image.shape[0] * values["pixel_size_mm"]
            self._image(self.recon_source, image, (-size / 2, -size / 2, size, size))
            self._colours(self.recon_mapper, image)
        centre = values.get("center_px")
        self.status.text = (f"run {product.run_uid[:8]} · XRD-CT scan {values['scan']}: {values['lines_done']}/"
                            f"{values['n_angles']} lines · centre "
                            + ("(after half the lines)" if centre is None else f"{centre:.2f} px")
                            + (" · finished" if values.get("finished") else "")
                            + f" · updated {time.strftime('%H:%M:%S', time.localtime(product.time_s))}")  # fmt: skip

    def _draw_maps(self, force: bool = False) -> None:
        product = self._new("maps", "xrdct.maps")
        scans = self.store.scans_with_maps()
        if product is not None:
            self.scan_select.options = [_LATEST, *(f"scan {scan} ({uid[:8]})" for uid, scan in scans)]
        if product is None and not force:
            return
        chosen = self.scan_select.value
        if chosen != _LATEST:
            labels = [f"scan {scan} ({uid[:8]})" for uid, scan in scans]
            product = self.store.maps_of(scans[labels.index(chosen)]) if chosen in labels else None
        else:
            product = self.store.get("xrdct.maps")[1]
        if product is None:
            return
        phases = sorted(key.split(":", 1)[1] for key in product.arrays if key.startswith("phase:"))
        self.phase_select.options = phases
        if phases and self.phase_select.value not in phases:
            self.phase_select.value = phases[0]  # redraws through its callback
            return
        size = product.arrays[next(iter(product.arrays))].shape[0] * product.values["pixel_size_mm"]
        if self.phase_select.value:
            image = product.arrays[f"phase:{self.phase_select.value}"]
            self._image(self.phase_source, image, (-size / 2, -size / 2, size, size))
            self._colours(self.phase_mapper, image)
            self.phase_plot.title.text = f"Phase map: {self.phase_select.value} (scan {product.values['scan']})"
        lattices = [key for key in product.arrays if key.startswith("lattice:")]
        if lattices:
            image = product.arrays[lattices[0]]
            self._image(self.lattice_source, image, (-size / 2, -size / 2, size, size))
            self._colours(self.lattice_mapper, image)
            self.lattice_plot.title.text = f"{lattices[0].split(':', 1)[1]} (Å), scan {product.values['scan']}"

    def _draw_series(self, product: Product) -> None:
        lattices = [key for key in product.arrays if key.startswith("mean_")]
        if lattices:
            self.series_source.data = {"capacity": product.arrays["capacity"], "lattice": product.arrays[lattices[0]],
                                       "voltage": product.arrays["voltage"]}  # fmt: skip
            self.series_plot.yaxis.axis_label = f"{lattices[0][5:]} (Å)"

    def _draw_potentiostat(self, product: Product) -> None:
        arrays = product.arrays
        minutes = (arrays["time"] - arrays["time"][0]) / 60 if arrays["time"].size else arrays["time"]
        self.potentiostat_source.data = {
            "minutes": minutes,
            "voltage": arrays["voltage"],
            "capacity": arrays["capacity"],
            "current_ma": arrays["current"] * 1e3,
        }
        values = product.values
        last = f"{arrays['voltage'][-1]:.3f} V, {arrays['current'][-1] * 1e3:.2f} mA" if minutes.size else ""
        self.potentiostat_status.text = (f"mode {values.get('mode')}, step {values.get('step')}; {last}; "
                                         f"{values.get('n_readings', 0)} readings")  # fmt: skip

    def _draw_spectrum(self, product: Product) -> None:
        self.spectrum_source.data = {"energy": product.arrays["energy_kev"], "counts": product.arrays["counts"]}
        self.spectrum_plot.title.text = f"XCS spectrum ({product.values.get('n_frames', 0)} frames)"

    def _draw_emf(self, product: Product) -> None:
        for source, mapper, key in ((self.emf_source, self.emf_mapper, "emf"),
                                    (self.sigma_source, self.sigma_mapper, "emf_sigma")):  # fmt: skip
            image = np.where(product.arrays["region"] > 0, product.arrays[key], np.nan) if key == "emf_sigma" else \
                product.arrays[key]  # fmt: skip
            self._image(source, image, (0, 0, image.shape[1], image.shape[0]))
            self._colours(mapper, image)
        values = product.values
        self.emf_plot.title.text = (f"EMF map, scan {values['scan']} at {values['height_mm']:.2f} mm: cathode "
                                    f"{values['emf_cathode']:.4f} ± {values['emf_cathode_sigma']:.4f}")  # fmt: skip

    def _draw_emf_series(self, product: Product) -> None:
        emf, sigma = product.arrays["emf_cathode"], product.arrays["emf_cathode_sigma"]
        self.emf_series_source.data = {"capacity": product.arrays["capacity"], "emf": emf, "low": emf - sigma,
                                       "high": emf + sigma}  # fmt: skip

    def _draw_xct(self, product: Product) -> None:
        image, labels = product.arrays["mu_per_m"], product.arrays["labels"]
        voxel = float(product.values.get("voxel_mm", 1.0))
        size_y, size_x = image.shape[0] * voxel, image.shape[1] * voxel
        self._image(self.xct_source, image, (-size_x / 2, -size_y / 2, size_x, size_y))
        self._colours(self.xct_mapper, image)
        edge = np.zeros(labels.shape, bool)  # where the component changes: the segmentation's outline
        edge[:-1] |= labels[:-1] != labels[1:]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        rows, cols = np.nonzero(edge)
        self.outline_source.data = {"x": (cols + 0.5) * voxel - size_x / 2, "y": (rows + 0.5) * voxel - size_y / 2}
        self.xct_plot.title.text = f"XCT scan {product.values['scan']}, row {product.values['row']} (μ, 1/m)"

    def _draw_diagnostics(self, product: Product) -> None:
        streams = product.values.get("streams", {})
        names = sorted(streams)
        self.diagnostics_source.data = {
            "stream": names, **{key: [streams[n].get(key, 0) for n in names] for key in
                                ("received", "missing", "late", "invalid")},
            "rate": [round(streams[n].get("frames_per_s", 0.0), 1) for n in names]}  # fmt: skip
        values = product.values
        self.diagnostics.text = (f"analysis lag {values.get('lag_s', 0.0):.2f} s, {values.get('backlog_frames', 0)} "
                                 f"frames waiting ({values.get('buffer_mb', 0.0):.0f} MB); invalid messages "
                                 f"{values.get('invalid_total', 0)}; analysis errors {values.get('errors', 0)}; "
                                 f"products received {self.store.n_received}")  # fmt: skip
