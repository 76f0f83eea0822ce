using System.Globalization;
using MiniGpt.Circuits;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// A composition-score heatmap (Elhage et al. 2021, "Composition"; scores as TransformerLens's
/// all_composition_scores, see MiniGpt/Circuits/Composition.cs): rows are the writing heads of layers
/// 0 … n−2, columns the reading heads of layers 1 … n−1; cells with the reader not in a later layer are
/// blank. Raw scores use a sequential scale from 0; baseline-subtracted ones (raw minus the random-matrix
/// expectation, as the paper plots them) a diverging scale centred on 0. Cells are annotated when there
/// are few enough to read.
/// </summary>
public static class CompositionPlot
{
    public static byte[] Render(CompositionScores s, CompositionKind kind, bool subtractBaseline)
    {
        int L = s.NLayers, H = s.NHeads;
        int rows = (L - 1) * H, cols = (L - 1) * H;
        var grid = new double[rows, cols];
        double maxAbs = 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
            {
                int l1 = r / H, h1 = r % H, l2 = 1 + c / H, h2 = c % H;
                if (l1 >= l2) { grid[r, c] = double.NaN; continue; }
                double v = subtractBaseline ? s.BaselineSubtracted(kind, l1, h1, l2, h2) : s.Raw(kind, l1, h1, l2, h2);
                grid[r, c] = v;
                maxAbs = Math.Max(maxAbs, Math.Abs(v));
            }
        if (maxAbs == 0) maxAbs = 1;

        using var plot = new Plot();
        var hm = plot.Add.Heatmap(grid);
        hm.NaNCellColor = Colors.White;
        if (subtractBaseline)
        {
            hm.Colormap = new ScottPlot.Colormaps.Balance();
            hm.ManualRange = new ScottPlot.Range(-maxAbs, maxAbs);
        }
        else
        {
            hm.Colormap = new ScottPlot.Colormaps.Viridis();
            hm.ManualRange = new ScottPlot.Range(0, maxAbs);
        }
        plot.Add.ColorBar(hm);
        var rowNames = Enumerable.Range(0, rows).Select(r => $"L{r / H}H{r % H}").ToList();
        var colNames = Enumerable.Range(0, cols).Select(c => $"L{1 + c / H}H{c % H}").ToList();
        var (xs, xl) = PlotImage.Ticks(colNames, 32);
        var (ys, yl) = PlotImage.Ticks(rowNames, 32, i => rows - 1 - i);
        plot.Axes.Bottom.SetTicks(xs, xl);
        plot.Axes.Left.SetTicks(ys, yl);
        if (cols > 6)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = -90;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        }
        plot.Axes.Bottom.Label.Text = "reading head (later layer)";
        plot.Axes.Left.Label.Text = "writing head (earlier layer)";
        if (rows * cols <= 64)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                {
                    if (double.IsNaN(grid[r, c])) continue;
                    var t = plot.Add.Text(grid[r, c].ToString("0.00", CultureInfo.InvariantCulture), c, rows - 1 - r);
                    t.Alignment = Alignment.MiddleCenter;
                    t.LabelFontSize = 11;
                    double frac = subtractBaseline ? Math.Abs(grid[r, c]) / maxAbs : grid[r, c] / maxAbs;
                    t.LabelFontColor = subtractBaseline ? (frac > 0.6 ? Colors.White : Colors.Black) : (frac > 0.6 ? Colors.Black : Colors.White);
                }
        string what = subtractBaseline ? $"minus baseline {s.Baseline(kind):0.000}" : "raw";
        plot.Title($"{kind}-composition ({what})", 13);
        plot.Axes.SetLimits(-0.5, cols - 0.5, -0.5, rows - 0.5);
        return PlotImage.Render(plot, 460, 400);
    }
}
