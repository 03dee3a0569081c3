// Draws the charts of an N1V1 report from their specs (n1v1/backtest/charts.py) with the inlined
// TradingView Lightweight Charts library. No network, no build step: the page is one file.
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const specNode = document.getElementById("n1v1-charts");
  if (!LWC || !specNode) return;
  const specs = JSON.parse(specNode.textContent);
  const drawn = {};
  window.n1v1Charts = drawn; // the browser tests read the charts through this

  const FORMATS = {
    currency: (v) => v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
    percent: (v) => v.toFixed(2) + " %",
    count: (v) => String(Math.round(v)),
    probability: (v) => v.toFixed(2),
    number: (v) => Math.abs(v) >= 1000 ? v.toLocaleString("en-US", { maximumFractionDigits: 0 }) : v.toPrecision(4),
  };

  function seriesOptions(s) {
    const common = {
      title: s.name,
      lastValueVisible: s.scale !== "volume" && s.type !== "histogram",
      priceLineVisible: false,
    };
    if (s.precision !== undefined) {
      common.priceFormat = { type: "price", precision: s.precision, minMove: Math.pow(10, -s.precision) };
    }
    if (s.scale === "volume") {
      Object.assign(common, { priceScaleId: "volume", priceFormat: { type: "volume" }, title: "" });
    }
    if (s.type === "candles") {
      return [LWC.CandlestickSeries, Object.assign(common, {
        upColor: "#1a7f43", downColor: "#c0392b", borderVisible: false,
        wickUpColor: "#1a7f43", wickDownColor: "#c0392b",
      })];
    }
    if (s.type === "histogram") {
      return [LWC.HistogramSeries, Object.assign(common, { color: s.colour })];
    }
    if (s.type === "baseline") {
      return [LWC.BaselineSeries, Object.assign(common, {
        baseValue: { type: "price", price: s.base || 0 },
        topLineColor: s.colour, bottomLineColor: s.colour,
        topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)",
        bottomFillColor1: "rgba(192,57,43,0.05)", bottomFillColor2: "rgba(192,57,43,0.35)",
        lineWidth: s.width || 1,
      })];
    }
    return [LWC.LineSeries, Object.assign(common, {
      color: s.colour,
      lineWidth: s.width || 2,
      lineStyle: s.dashed ? LWC.LineStyle.Dashed : LWC.LineStyle.Solid,
      pointMarkersVisible: Boolean(s.points),
      pointMarkersRadius: s.points ? 3 : undefined,
    })];
  }

  function rows(s) {
    if (s.type === "candles") {
      return s.data.map((r) => ({ time: r[0], open: r[1], high: r[2], low: r[3], close: r[4] }));
    }
    if (s.type === "histogram") {
      return s.data.map((r) => (r[2] ? { time: r[0], value: r[1], color: r[2] } : { time: r[0], value: r[1] }));
    }
    return s.data.map((r) => (r[1] === null ? { time: r[0] } : { time: r[0], value: r[1] }));
  }

  function draw(spec) {
    const figure = document.getElementById("chart-" + spec.id);
    const box = document.getElementById("chart-" + spec.id + "-canvas");
    box.style.height = spec.height + "px";
    const format = FORMATS[spec.unit];
    const options = {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#333333", attributionLogo: false },
      grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
      rightPriceScale: { borderColor: "#cccccc" },
      timeScale: { borderColor: "#cccccc", timeVisible: true, secondsVisible: false },
      localization: format ? { priceFormatter: format } : {},
    };
    if (spec.kind === "numeric") options.localization.precision = spec.x_precision;
    const chart = spec.kind === "numeric"
      ? LWC.createOptionsChart(box, options)
      : LWC.createChart(box, options);
    const series = spec.series.map((s) => {
      const [kind, opts] = seriesOptions(s);
      const made = chart.addSeries(kind, opts);
      made.setData(rows(s));
      if (s.scale === "volume") {
        chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
      }
      if (s.base !== undefined && s.type === "line") {
        made.createPriceLine({ price: s.base, color: "#999999", lineStyle: LWC.LineStyle.Dashed, lineWidth: 1, title: "start" });
      }
      return made;
    });
    const byIndex = {};
    for (const m of spec.markers) {
      (byIndex[m.series] = byIndex[m.series] || []).push({
        time: m.x, position: m.position, shape: m.shape, color: m.colour, text: m.text,
      });
    }
    for (const [index, markers] of Object.entries(byIndex)) {
      LWC.createSeriesMarkers(series[Number(index)], markers);
    }
    chart.timeScale().fitContent();
    figure.querySelector("button.fit").addEventListener("click", () => {
      chart.timeScale().fitContent();
      chart.priceScale("right").applyOptions({ autoScale: true });
    });
    const log = figure.querySelector("input.log");
    if (log) {
      log.addEventListener("change", () => {
        chart.priceScale("right").applyOptions({
          mode: log.checked ? LWC.PriceScaleMode.Logarithmic : LWC.PriceScaleMode.Normal,
        });
      });
    }
    return { chart, series };
  }

  for (const spec of specs) {
    try {
      drawn[spec.id] = draw(spec);
    } catch (error) {
      const box = document.getElementById("chart-" + spec.id + "-canvas");
      if (box) {
        box.textContent = "This chart could not be drawn: " + error;
        box.className = "chart-canvas no-script";
      }
      throw error;
    }
  }
})();
