using System.Globalization;
using MiniGpt.Superposition;
using ScottPlot;

namespace MiniGpt.Train.Report;

/// <summary>
/// The superposition verb's figures (Elhage et al. 2022), one PNG each, named superposition_*.png:
///   wtw_S.png       WᵀW of the main sweep's model at sparsity S (PatchHeatmap: blue −1 … white 0 … red +1);
///   norms_S.png     ‖W_i‖ per feature as bars coloured by Σ_{j≠i}(Ŵ_i·W_j)² (Inferno: black = a dimension of its own,
///                   yellow ≥ 1 = heavily superposed), the paper's companion to WᵀW;
///   dimensionality.png  D_i of every feature against 1/(1 − S), with m/‖W‖_F² and the fractions 1, 1/2, 2/5, 1/3;
///   plane_S.png     the m = 2 model's columns W_i as arrows in the plane;
///   phase.png       the n = 2, m = 1 phase of each cell (density × relative importance), the theory's boundary marked.
/// </summary>
public static class SuperpositionPlots
{
    public const string Prefix = "superposition_";

    public static bool IsPlotName(string file) => file.StartsWith(Prefix, StringComparison.Ordinal) && file.EndsWith(".png", StringComparison.Ordinal);

    /// <summary>S as a file-name part: 0.997 → "0.997", 0 → "0".</summary>
    public static string Tag(double s) => s.ToString("0.######", CultureInfo.InvariantCulture);

    public static List<PlotImage> Draw(SuperpositionResult r)
    {
        var plots = new List<PlotImage>();
        var o = r.Options;
        foreach (var run in r.Main)
        {
            string s = Tag(run.Sparsity);
            var labels = Enumerable.Range(0, o.N).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList();
            plots.Add(new PlotImage($"{Prefix}wtw_{s}.png", $"WᵀW, S = {s}",
                $"n = {o.N}, m = {o.M}: entry (i, j) is W_i·W_j; the diagonal is ‖W_i‖², off-diagonal entries are interference. {run.Geometry.Represented.Length} features with ‖W_i‖ > 0.5.",
                PatchHeatmap.Render(run.Geometry.Gram, o.N, o.N, labels, labels, $"WᵀW, S = {s}", 1, "feature j", "feature i")));
            plots.Add(new PlotImage($"{Prefix}norms_{s}.png", $"Feature norms, S = {s}",
                "‖W_i‖ per feature, coloured by the superposition Σ_{j≠i}(Ŵ_i·W_j)²: black = orthogonal to every other feature, yellow = ≥ 1.",
                Norms(run, s)));
        }
        if (r.Main.Count > 0)
            plots.Add(new PlotImage($"{Prefix}dimensionality.png", "Feature dimensionality",
                "D_i = ‖W_i‖² / Σ_j(Ŵ_i·W_j)² of every feature (dots) against 1/(1 − S); the line is m/‖W‖_F², the dimensions per feature. " +
                "Dashed: 1 (a dimension of its own), 1/2 (antipodal pair), 2/5 (pentagon), 1/3.", Dimensionality(r)));
        foreach (var run in r.Plane)
        {
            string s = Tag(run.Sparsity);
            plots.Add(new PlotImage($"{Prefix}plane_{s}.png", $"n = {o.PlaneN}, m = 2, S = {s}",
                $"The columns W_i of the m = 2 model as arrows; {run.Geometry.Represented.Length} with ‖W_i‖ > 0.5" +
                (run.NeighbourGaps is { Length: > 1 } g ? $", {string.Join("°, ", g.Select(a => a.ToString("0", CultureInfo.InvariantCulture)))}° apart." : "."),
                Plane(run, s)));
        }
        if (r.Phase is { } pd)
            plots.Add(new PlotImage($"{Prefix}phase.png", "Phase diagram, n = 2, m = 1",
                "Each cell: the trained model's phase (blue: only feature 0, the extra feature not learned; red: only the extra feature, a dedicated dimension; " +
                "grey: both, antipodal superposition; white: neither). Black dots: cells where the closed-form theory predicts superposition.",
                PhasePlot(pd)));
        return plots;
    }

    private static byte[] Norms(SparsityRun run, string s)
    {
        using var plot = new Plot();
        var g = run.Geometry;
        var cmap = new ScottPlot.Colormaps.Inferno();
        var bars = new List<Bar>();
        for (int i = 0; i < g.N; i++)
            // Inferno at 0.9 is yellow; its top is near-white, which would vanish on the background
            bars.Add(new Bar { Position = g.N - 1 - i, Value = g.Norms[i], FillColor = cmap.GetColor(0.9 * Math.Clamp(g.Superposition[i], 0, 1)), LineWidth = 0, Size = 0.8 });
        var bp = plot.Add.Bars(bars);
        bp.Horizontal = true;
        var (ys, yl) = PlotImage.Ticks(Enumerable.Range(0, g.N).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList(), 40, i => g.N - 1 - i);
        plot.Axes.Left.SetTicks(ys, yl);
        plot.Axes.Left.Label.Text = "feature i";
        plot.Axes.Bottom.Label.Text = "‖W_i‖";
        plot.Add.VerticalLine(FeatureGeometry.RepresentedNorm, 1, Colors.Gray, LinePattern.Dotted);
        plot.Title($"‖W_i‖, S = {s}", 13);
        plot.Axes.SetLimits(0, Math.Max(1.3, g.Norms.DefaultIfEmpty(0).Max() * 1.05), -0.6, g.N - 0.4);
        return PlotImage.Render(plot, 340, Math.Clamp(120 + g.N * 16, 220, 800));
    }

    private static byte[] Dimensionality(SuperpositionResult r)
    {
        using var plot = new Plot();
        var xs = r.Main.Select(x => Math.Log10(1 / (1 - x.Sparsity))).ToArray();
        foreach (double f in new[] { 1.0, 0.5, 0.4, 1.0 / 3 })
            plot.Add.HorizontalLine(f, 1, Colors.Gray, LinePattern.Dashed);
        var px = new List<double>();
        var py = new List<double>();
        for (int k = 0; k < r.Main.Count; k++)
            foreach (int i in r.Main[k].Geometry.Represented)
            {
                // a small deterministic jitter so coinciding dots stay visible
                px.Add(xs[k] + 0.015 * ((i % 7) - 3));
                py.Add(r.Main[k].Geometry.Dimensionality[i]);
            }
        var dots = plot.Add.Markers(px.ToArray(), py.ToArray(), MarkerShape.FilledCircle, 5, Colors.SteelBlue.WithAlpha(0.7));
        dots.LegendText = "D_i of the represented features";
        var line = plot.Add.ScatterLine(xs, r.Main.Select(x => x.Geometry.DimensionsPerFeature).ToArray(), Colors.Black);
        line.LineWidth = 2;
        line.LegendText = "m/‖W‖_F² (dimensions per feature)";
        plot.Axes.Bottom.SetTicks(xs, r.Main.Select(x => $"{1 / (1 - x.Sparsity):0.#}").ToArray());
        plot.Axes.Bottom.Label.Text = "1/(1 − S)  (log scale)";
        plot.Axes.Left.Label.Text = "dimensionality";
        plot.Axes.SetLimits(xs.Min() - 0.15, xs.Max() + 0.15, 0, 1.1);
        plot.Title($"Feature dimensionality, n = {r.Options.N}, m = {r.Options.M}", 13);
        plot.ShowLegend(Alignment.UpperRight);
        plot.Legend.FontSize = 10;
        return PlotImage.Render(plot, 640, 380);
    }

    private static readonly Color[] FeatureColours =
        [Colors.Crimson, Colors.DarkOrange, Colors.GoldenRod, Colors.ForestGreen, Colors.SteelBlue, Colors.Purple, Colors.Brown, Colors.Teal];

    private static byte[] Plane(SparsityRun run, string s)
    {
        using var plot = new Plot();
        var w = run.Trained.Model.W;
        int n = run.Trained.Model.N;
        double lim = Math.Max(1.2, Enumerable.Range(0, n).Max(i => Math.Sqrt(w[i] * w[i] + w[n + i] * w[n + i])) * 1.15);
        var circle = plot.Add.Circle(0, 0, 1);
        circle.LineColor = Colors.LightGray;
        circle.LinePattern = LinePattern.Dotted;
        circle.FillColor = Colors.Transparent;
        for (int i = 0; i < n; i++)
        {
            var c = FeatureColours[i % FeatureColours.Length];
            var a = plot.Add.Arrow(new Coordinates(0, 0), new Coordinates(w[i], w[n + i]));
            a.ArrowLineColor = c;
            a.ArrowFillColor = c;
            a.ArrowLineWidth = 0;
            a.ArrowWidth = 3;
            a.ArrowheadWidth = 12;
            a.ArrowheadLength = 12;
            var t = plot.Add.Text(i.ToString(CultureInfo.InvariantCulture), w[i] * 1.08, w[n + i] * 1.08);
            t.LabelFontColor = c;
            t.LabelFontSize = 12;
            t.Alignment = Alignment.MiddleCenter;
        }
        plot.Axes.SetLimits(-lim, lim, -lim, lim);
        plot.Axes.SquareUnits();
        plot.Title($"W_i in the plane, S = {s}", 13);
        return PlotImage.Render(plot, 320, 320);
    }

    private static byte[] PhasePlot(PhaseDiagram pd)
    {
        using var plot = new Plot();
        // cell centres on log10 axes: x = log10 r, y = log10 (1 − S)
        var xs = pd.Ratios.Select(Math.Log10).ToArray();
        var ys = pd.Sparsities.Select(s => Math.Log10(1 - s)).ToArray();
        double dx = pd.Cols > 1 ? (xs[^1] - xs[0]) / (pd.Cols - 1) : 1, dy = pd.Rows > 1 ? (ys[0] - ys[^1]) / (pd.Rows - 1) : 1;
        for (int i = 0; i < pd.Rows; i++)
            for (int j = 0; j < pd.Cols; j++)
            {
                var rect = plot.Add.Rectangle(xs[j] - dx / 2, xs[j] + dx / 2, ys[i] - dy / 2, ys[i] + dy / 2);
                rect.FillColor = PhaseColour(pd[i, j].Phase);
                rect.LineColor = Colors.White;
                rect.LineWidth = 1;
                if (PhaseTheory.Predict(pd.Sparsities[i], pd.Ratios[j]) == Phase.Superposition)
                    plot.Add.Marker(xs[j], ys[i], MarkerShape.FilledCircle, 5, Colors.Black);
            }
        foreach (var (p, label) in new[] { (Phase.FirstOnly, "feature 0 only"), (Phase.SecondOnly, "extra feature only"), (Phase.Superposition, "antipodal superposition") })
        {
            var m = plot.Add.Marker(double.NaN, double.NaN, MarkerShape.FilledSquare, 10, PhaseColour(p));
            m.LegendText = label;
        }
        plot.Axes.Bottom.SetTicks(xs, pd.Ratios.Select(r => r.ToString("0.##", CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.Left.SetTicks(ys, pd.Sparsities.Select(s => (1 - s).ToString("0.###", CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.Bottom.Label.Text = "relative importance r of the extra feature (log scale)";
        plot.Axes.Left.Label.Text = "feature density 1 − S (log scale)";
        plot.Axes.SetLimits(xs[0] - dx / 2, xs[^1] + dx / 2, ys[^1] - dy / 2, ys[0] + dy / 2);
        plot.Title("Two features in one dimension: learned phase (colour), theory's superposition (dots)", 12);
        plot.ShowLegend(Alignment.LowerRight);
        plot.Legend.FontSize = 10;
        return PlotImage.Render(plot, 620, 520);
    }

    public static Color PhaseColour(Phase p) => p switch
    {
        Phase.FirstOnly => Colors.SteelBlue,
        Phase.SecondOnly => Colors.IndianRed,
        Phase.Superposition => Colors.DarkGray,
        Phase.BothSameSide => Colors.Gold,
        _ => Colors.White,
    };
}
