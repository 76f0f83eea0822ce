using System.Globalization;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// One patching grid as a heatmap: rows (layers, or layer-head pairs) down the left with row 0 at the top,
/// columns (positions labelled with the clean prompt's tokens, heads, or q/k/v) along the bottom. The colour
/// scale diverges from 0 (the corrupted run: white) to ±maxAbs, red for recovering the clean behaviour and
/// blue for pushing further from it, so that exact and attribution grids drawn with one maxAbs compare
/// cell for cell. NaN cells (no such path, an undefined normalisation) are grey. Small grids are annotated.
/// </summary>
public static class PatchHeatmap
{
    public static byte[] Render(double[] values, int rows, int cols, IReadOnlyList<string> rowLabels, IReadOnlyList<string> colLabels,
        string title, double maxAbs, string xLabel, string yLabel)
    {
        var grid = new double[rows, cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) grid[r, c] = values[r * cols + c];
        if (!(maxAbs > 0) || !double.IsFinite(maxAbs)) maxAbs = 1;
        // ScottPlot takes the data range from the cells and refuses one with no finite cell (every cell 0/0, as when
        // the clean and corrupted metrics are equal): draw it as all 0 and say so, rather than fail the report
        bool undefined = !values.Any(double.IsFinite);
        if (undefined)
        {
            Array.Clear(grid);
            title += " (undefined: clean = corrupted)";
        }

        using var plot = new Plot();
        var hm = plot.Add.Heatmap(grid);
        // Balance runs blue → white → red; reversed by nothing: positive (clean recovered) is red
        hm.Colormap = new ScottPlot.Colormaps.Balance();
        hm.ManualRange = new ScottPlot.Range(-maxAbs, maxAbs);
        hm.NaNCellColor = Colors.LightGray;
        plot.Add.ColorBar(hm);

        var (xs, xl) = PlotImage.Ticks(colLabels, 48);
        var (ys, yl) = PlotImage.Ticks(rowLabels, 48, i => rows - 1 - i);
        plot.Axes.Bottom.SetTicks(xs, xl);
        plot.Axes.Left.SetTicks(ys, yl);
        if (cols > 8 || colLabels.Any(l => l.Length > 3))
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = -90;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        }
        float labelSize = cols > 48 ? 8 : cols > 24 ? 10 : 12;
        plot.Axes.Bottom.TickLabelStyle.FontSize = labelSize;
        plot.Axes.Left.TickLabelStyle.FontSize = rows > 24 ? 9 : 12;
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = yLabel;
        if (rows * cols <= 64 && cols <= 12)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                {
                    if (undefined || !double.IsFinite(grid[r, c])) continue;
                    var t = plot.Add.Text(grid[r, c].ToString("0.00", CultureInfo.InvariantCulture), c, rows - 1 - r);
                    t.Alignment = Alignment.MiddleCenter;
                    t.LabelFontSize = 11;
                    t.LabelFontColor = Math.Abs(grid[r, c]) / maxAbs > 0.6 ? Colors.White : Colors.Black;
                }
        plot.Title(title, 13);
        plot.Axes.SetLimits(-0.5, cols - 0.5, -0.5, rows - 0.5);
        int width = Math.Clamp(200 + cols * 22, 420, 1000), height = Math.Clamp(150 + rows * 28, 260, 900);
        return PlotImage.Render(plot, width, height);
    }

    /// <summary>The largest finite |value| of the grids (the shared colour range), 1 when there is none.</summary>
    public static double MaxAbs(params IEnumerable<double>[] grids)
    {
        double m = grids.SelectMany(g => g).Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max();
        return m > 0 ? m : 1;
    }
}
