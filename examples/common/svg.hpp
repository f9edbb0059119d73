// svg.hpp: the two pictures the examples draw, as standalone SVG text: a heatmap grid (one
// coloured cell per query row and key column) and a line plot (a few series on linear axes).
// Nothing more: no dependencies, no styling beyond what the pictures need.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace svg {

// Layout in SVG user units (pixels).
inline constexpr double kMargin = 40;     // around the drawing, room for labels
inline constexpr double kTitleRoom = 24;  // above the drawing
inline constexpr double kFontSize = 11;

/// Writes `text` to `path`; false if the file cannot be written.
inline bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

/// `dir`/`name`, for an output folder given on the command line ("" or "." is the current one).
inline std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

inline std::string header(double width, double height) {
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\""
    << kFontSize << "\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  return o.str();
}

inline std::string text(double x, double y, const std::string& s, const char* anchor = "middle",
                        double size = kFontSize) {
  std::ostringstream o;
  o << "<text x=\"" << x << "\" y=\"" << y << "\" text-anchor=\"" << anchor << "\" font-size=\""
    << size << "\">" << escape(s) << "</text>\n";
  return o.str();
}

inline std::string line(double x1, double y1, double x2, double y2, const std::string& colour,
                        double width = 1, const char* dash = nullptr) {
  std::ostringstream o;
  o << "<line x1=\"" << x1 << "\" y1=\"" << y1 << "\" x2=\"" << x2 << "\" y2=\"" << y2
    << "\" stroke=\"" << colour << "\" stroke-width=\"" << width << '"';
  if (dash != nullptr) o << " stroke-dasharray=\"" << dash << '"';
  o << "/>\n";
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// Heatmap: rows x cols cells, each filled with the colour fill(i, j) returns.
// ---------------------------------------------------------------------------------------------

struct grid {
  std::string title;
  int rows = 0;
  int cols = 0;
  double cell = 20;                                // cell side
  std::function<std::string(int, int)> fill;       // colour of cell (row i, column j)
  std::function<std::string(int)> row_label;       // optional, drawn left of each row
  std::function<std::string(int)> col_label;       // optional, drawn above each column
  std::function<std::string(int)> row_label_fill;  // optional background of a row label
  std::vector<int> row_breaks, col_breaks;         // thick lines before these rows / columns
  std::vector<std::pair<std::string, std::string>> legend;  // (colour, meaning)
};

/// A colour for a value in [0, 1]: white at 0, dark red at 1 (a heatmap's scale).
inline std::string shade(double value) {
  const double w = std::min(1.0, std::max(0.0, value));
  const int r = int(255 - w * (255 - 122)), g = int(255 - w * (255 - 31)),
            b = int(255 - w * (255 - 31));
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", r, g, b);
  return buf;
}

inline std::string heatmap(const grid& g) {
  const double left = kMargin, top = kMargin + kTitleRoom;
  const double legend_room = g.legend.empty() ? 0 : 20.0 * double(g.legend.size()) + 8;
  const double width = left + g.cols * g.cell + kMargin;
  const double height = top + g.rows * g.cell + kMargin / 2 + legend_room;
  const double title_width = left + 0.6 * (kFontSize + 2) * double(g.title.size()) + kMargin;
  std::string s = header(std::max(width, title_width), height);
  s += text(left, kMargin / 2 + kTitleRoom / 2, g.title, "start", kFontSize + 2);
  for (int i = 0; i < g.rows; ++i)
    for (int j = 0; j < g.cols; ++j) {
      std::ostringstream o;
      o << "<rect x=\"" << left + j * g.cell << "\" y=\"" << top + i * g.cell << "\" width=\""
        << g.cell << "\" height=\"" << g.cell << "\" fill=\"" << g.fill(i, j)
        << "\" stroke=\"#ffffff\" stroke-width=\"0.5\"/>\n";
      s += o.str();
    }
  const double small = std::min(kFontSize, g.cell * 0.7);  // labels must fit a cell
  for (int i = 0; i < g.rows && g.row_label; ++i) {
    const double y = top + (i + 0.5) * g.cell;
    if (g.row_label_fill) {
      std::ostringstream o;
      o << "<rect x=\"" << left - 2.2 * g.cell << "\" y=\"" << y - g.cell / 2 << "\" width=\""
        << 2 * g.cell << "\" height=\"" << g.cell << "\" fill=\"" << g.row_label_fill(i)
        << "\"/>\n";
      s += o.str();
    }
    s += text(left - 4, y + small / 3, g.row_label(i), "end", small);
  }
  for (int j = 0; j < g.cols && g.col_label; ++j)
    s += text(left + (j + 0.5) * g.cell, top - 4, g.col_label(j), "middle", small);
  for (int r : g.row_breaks)
    s += line(left, top + r * g.cell, left + g.cols * g.cell, top + r * g.cell, "#333333", 1.5);
  for (int c : g.col_breaks)
    s += line(left + c * g.cell, top, left + c * g.cell, top + g.rows * g.cell, "#333333", 1.5);
  const double legend_top = top + g.rows * g.cell + kMargin / 2;
  for (std::size_t k = 0; k < g.legend.size(); ++k) {
    const double y = legend_top + 20.0 * double(k);
    s += "<rect x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(y) +
         "\" width=\"12\" height=\"12\" fill=\"" + g.legend[k].first + "\" stroke=\"#999\"/>\n";
    s += text(left + 18, y + 10, g.legend[k].second, "start");
  }
  return s + "</svg>\n";
}

// ---------------------------------------------------------------------------------------------
// Line plot: series of (x, y) points on linear axes with a few round ticks.
// ---------------------------------------------------------------------------------------------

struct series {
  std::string name;
  std::string colour;
  std::vector<double> x, y;
  const char* dash = nullptr;  // e.g. "6 3" for a dashed line
};

struct plot {
  std::string title, x_label, y_label;
  std::vector<series> lines;
  double width = 560, height = 340;
  std::vector<std::pair<double, std::string>> y_marks;  // dotted horizontal lines with a label
  std::vector<std::pair<double, std::string>> x_marks;  // dotted vertical lines with a label
};

/// A round step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`.
inline double tick_step(double span, int count) {
  const double raw = span / count, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

inline std::string line_plot(const plot& p) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const series& s : p.lines)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  for (const auto& m : p.y_marks) y0 = std::min(y0, m.first), y1 = std::max(y1, m.first);
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) y1 = y0 + 1;
  const double ystep = tick_step(y1 - y0, 6), xstep = tick_step(x1 - x0, 10);
  y0 = std::floor(y0 / ystep) * ystep, y1 = std::ceil(y1 / ystep) * ystep;

  std::size_t longest_name = 0;
  for (const series& ser : p.lines) longest_name = std::max(longest_name, ser.name.size());
  const double left = kMargin + 30, top = kMargin + kTitleRoom;
  const double legend_room = 50 + 0.6 * kFontSize * double(longest_name);
  const double width = std::max(p.width, left + 0.6 * (kFontSize + 2) * double(p.title.size()));
  const double w = width - left - kMargin - legend_room, h = p.height - top - kMargin - 10;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * w; };
  auto py = [&](double y) { return top + (y1 - y) / (y1 - y0) * h; };

  std::string s = header(width, p.height);
  s += text(left, kMargin / 2 + kTitleRoom / 2, p.title, "start", kFontSize + 2);
  char buf[32];
  for (double y = y0; y <= y1 + ystep / 2; y += ystep) {
    s += line(left, py(y), left + w, py(y), "#e6e6e6");
    std::snprintf(buf, sizeof buf, "%g", std::fabs(y) < ystep / 2 ? 0.0 : y);
    s += text(left - 5, py(y) + 4, buf, "end");
  }
  for (double x = std::ceil(x0 / xstep) * xstep; x <= x1 + xstep / 2; x += xstep) {
    s += line(px(x), top + h, px(x), top + h + 4, "#333333");
    std::snprintf(buf, sizeof buf, "%g", x);
    s += text(px(x), top + h + 16, buf);
  }
  s += line(left, top + h, left + w, top + h, "#333333");
  s += line(left, top, left, top + h, "#333333");
  s += text(left + w / 2, top + h + 32, p.x_label);
  std::ostringstream yl;
  yl << "<text transform=\"translate(" << kMargin / 2 << ',' << top + h / 2
     << ") rotate(-90)\" text-anchor=\"middle\">" << escape(p.y_label) << "</text>\n";
  s += yl.str();
  for (const auto& m : p.y_marks) {
    s += line(left, py(m.first), left + w, py(m.first), "#888888", 1, "2 3");
    s += text(left + w - 4, py(m.first) - 4, m.second, "end");
  }
  for (const auto& m : p.x_marks) {
    s += line(px(m.first), top, px(m.first), top + h, "#888888", 1, "2 3");
    s += text(px(m.first) + 4, top + 12, m.second, "start");
  }
  for (std::size_t k = 0; k < p.lines.size(); ++k) {
    const series& ser = p.lines[k];
    std::ostringstream o;
    o << "<polyline fill=\"none\" stroke=\"" << ser.colour << "\" stroke-width=\"2\"";
    if (ser.dash != nullptr) o << " stroke-dasharray=\"" << ser.dash << '"';
    o << " points=\"";
    for (std::size_t i = 0; i < ser.x.size(); ++i) o << px(ser.x[i]) << ',' << py(ser.y[i]) << ' ';
    o << "\"/>\n";
    for (std::size_t i = 0; i < ser.x.size(); ++i)
      o << "<circle cx=\"" << px(ser.x[i]) << "\" cy=\"" << py(ser.y[i]) << "\" r=\"2.5\" fill=\""
        << ser.colour << "\"/>\n";
    s += o.str();
    const double ly = top + 10 + 18.0 * double(k);
    s += line(left + w + 15, ly, left + w + 35, ly, ser.colour, 2, ser.dash);
    s += text(left + w + 40, ly + 4, ser.name, "start");
  }
  return s + "</svg>\n";
}

}  // namespace svg
