using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// The in-context learning curve of Olsson et al. 2022 ("In-context Learning and Induction Heads"): the
/// mean next-token loss at each position of the context (InContext.LossByPosition). A model that uses
/// its context predicts later tokens better, so the curve falls; the ICL score is the loss at the late
/// index minus the loss at the early one (both marked). The dashed line is ln(d_vocab), the loss of a
/// uniform guess.
/// </summary>
public static class LossCurvePlot
{
    public static byte[] Render(double[] lossByPosition, int early, int late, double icl, int dVocab)
    {
        using var plot = new Plot();
        var xs = Enumerable.Range(0, lossByPosition.Length).Select(i => (double)i).ToArray();
        var line = plot.Add.Scatter(xs, lossByPosition, Colors.SteelBlue);
        line.LineWidth = 2;
        line.MarkerSize = 4;
        line.LegendText = "mean loss at position";
        var u = plot.Add.HorizontalLine(Math.Log(dVocab), 1, Colors.Gray, LinePattern.Dashed);
        u.LegendText = $"ln d_vocab = {Math.Log(dVocab):0.00} (uniform)";
        foreach (int i in new[] { early, late }.Distinct())
            if (i >= 0 && i < lossByPosition.Length)
                plot.Add.Markers(new double[] { i }, new[] { lossByPosition[i] }, MarkerShape.OpenCircle, 14, Colors.Crimson);
        plot.Title($"Loss by position (ICL score: loss[{late}] − loss[{early}] = {icl:+0.000;-0.000})", 13);
        plot.Axes.Bottom.Label.Text = "token position in the context";
        plot.Axes.Left.Label.Text = "next-token loss (nats)";
        plot.Axes.SetLimitsY(0, Math.Max(Math.Log(dVocab), lossByPosition.DefaultIfEmpty(0).Max()) * 1.08);
        plot.ShowLegend(Alignment.LowerLeft);
        return PlotImage.Render(plot, 720, 380);
    }
}
