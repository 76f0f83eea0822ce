using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// One head's attention pattern A[query, key] (blocks.{l}.attn.hook_pattern) as a heatmap: queries down
/// the left (the first token at the top, as TransformerLens/CircuitsVis draw it), keys along the bottom,
/// each labelled with its token as text. Keys after the query (masked by causality) are blank. Dashed
/// lines mark where the repeated half starts, so a previous-token head shows as the sub-diagonal and an
/// induction head as the stripe one key right of the diagonal of the first half ("offset L−1").
/// </summary>
public static class AttentionPlot
{
    public static byte[] Render(float[] pattern, IReadOnlyList<string> tokens, int repeatStart, string title)
    {
        int T = tokens.Count;
        var grid = new double[T, T];
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) grid[i, j] = j <= i ? pattern[i * T + j] : double.NaN;

        using var plot = new Plot();
        var hm = plot.Add.Heatmap(grid);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        hm.ManualRange = new ScottPlot.Range(0, 1);
        hm.NaNCellColor = Colors.White;
        plot.Add.ColorBar(hm); // unlabelled: a label there collides with the tick labels, and the title says what it is

        // the heatmap draws row r at y = T−1−r: query 0 at the top
        var labels = tokens.ToList();
        var (xs, xl) = PlotImage.Ticks(labels, 64);
        var (ys, yl) = PlotImage.Ticks(labels, 64, i => T - 1 - i);
        plot.Axes.Bottom.SetTicks(xs, xl);
        plot.Axes.Left.SetTicks(ys, yl);
        bool longLabels = tokens.Any(t => t.Length > 1);
        if (longLabels)
        {
            plot.Axes.Bottom.TickLabelStyle.Rotation = -90;
            plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleRight;
        }
        float labelSize = T > 48 ? 8 : T > 32 ? 10 : 12;
        plot.Axes.Bottom.TickLabelStyle.FontSize = labelSize;
        plot.Axes.Left.TickLabelStyle.FontSize = labelSize;
        plot.Axes.Bottom.Label.Text = "key (attended-to token)";
        plot.Axes.Left.Label.Text = "query (current token)";
        if (repeatStart > 0 && repeatStart < T)
        {
            plot.Add.VerticalLine(repeatStart - 0.5, 1, Colors.White.WithAlpha(0.8), LinePattern.Dashed);
            plot.Add.HorizontalLine(T - 1 - repeatStart + 0.5, 1, Colors.White.WithAlpha(0.8), LinePattern.Dashed);
        }
        plot.Title(title, 14);
        plot.Axes.SetLimits(-0.5, T - 0.5, -0.5, T - 0.5);
        return PlotImage.Render(plot, 640, 600);
    }
}
