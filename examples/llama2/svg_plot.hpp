// A line chart as a standalone SVG file: categorical x axis, logarithmic y axis, one polyline
// with dots per series and a legend. Just enough for the perplexity-per-position plot.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace llama2 {

struct plot_series {
  std::string name;
  std::vector<double> y;  // one value per x label; non-positive or non-finite values are skipped
};

inline std::string svg_line_chart(const std::string& title, const std::string& x_title,
                                  const std::string& y_title,
                                  const std::vector<std::string>& x_labels,
                                  const std::vector<plot_series>& series) {
  static const char* const kColors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"};
  const double W = 760, H = 420, left = 70, right = 230, top = 40, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;

  // y range in decades, covering every plotted value
  double lo = 1e300, hi = -1e300;
  for (const plot_series& s : series)
    for (double y : s.y)
      if (y > 0 && std::isfinite(y)) lo = std::min(lo, y), hi = std::max(hi, y);
  if (lo > hi) lo = 1, hi = 10;
  const double d0 = std::floor(std::log10(lo)), d1 = std::max(d0 + 1, std::ceil(std::log10(hi)));
  auto X = [&](std::size_t i) {
    return left + pw * (x_labels.size() > 1 ? double(i) / double(x_labels.size() - 1) : 0.5);
  };
  auto Y = [&](double y) { return top + ph * (1.0 - (std::log10(y) - d0) / (d1 - d0)); };

  std::string svg;
  char buf[512];
  auto add = [&](const char* fmt, auto... a) {
    std::snprintf(buf, sizeof buf, fmt, a...);
    svg += buf;
  };
  add("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      W, H);
  add("<text x=\"%.0f\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">%s</text>\n",
      left + pw / 2, title.c_str());
  // y grid at 1, 2, 5 x 10^k
  for (double d = d0; d <= d1; ++d)
    for (double m : {1.0, 2.0, 5.0}) {
      const double y = m * std::pow(10.0, d);
      if (std::log10(y) > d1 + 1e-9) break;
      add("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
          left, left + pw, Y(y), Y(y), left - 6, Y(y) + 4, y);
    }
  for (std::size_t i = 0; i < x_labels.size(); ++i)
    add("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", X(i), top + ph + 18,
        x_labels[i].c_str());
  add("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
      "stroke=\"#444\"/>\n",
      left, top, pw, ph);
  add("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", left + pw / 2, H - 14,
      x_title.c_str());
  add("<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
      top + ph / 2, y_title.c_str());
  for (std::size_t k = 0; k < series.size(); ++k) {
    const char* color = kColors[k % 5];
    std::string points;
    for (std::size_t i = 0; i < series[k].y.size() && i < x_labels.size(); ++i) {
      const double y = series[k].y[i];
      if (!(y > 0 && std::isfinite(y))) continue;
      add("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(i), Y(y), color);
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", X(i), Y(y));
      points += buf;
    }
    svg += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + std::string(color) +
           "\" points=\"" + points + "\"/>\n";
    const double ly = top + 10 + 20 * double(k);
    add("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"/>"
        "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
        left + pw + 12, left + pw + 32, ly, ly, color, left + pw + 38, ly + 4,
        series[k].name.c_str());
  }
  return svg + "</svg>\n";
}

}  // namespace llama2
