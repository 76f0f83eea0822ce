using System.Globalization;
using System.Text;
using MiniGpt.Superposition;
using MiniGpt.Train.Progress;

namespace MiniGpt.Train.Report;

/// <summary>The superposition verb's text summary: one line per model of each sweep, then the phase diagram's counts.</summary>
// the app runs with InvariantGlobalization, so interpolated numbers print with a "." everywhere
public static class SuperpositionSummary
{
    private static string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "–";

    public static string Format(SuperpositionResult r)
    {
        var o = r.Options;
        var t = o.Train;
        var sb = new StringBuilder();
        sb.Append(ConsoleLine.Wrap($"superposition: n = {o.N} features into m = {o.M} dimensions, I_i = {F(o.Importance, "0.###")}^i, " +
            $"{t.Steps} AdamW steps of {t.BatchSize} (lr {F(t.Lr, "0.#####")}), {o.Sparsities.Length} sparsities, {r.Threads} threads", 15)).Append('\n');
        Table(sb, r.Main);
        if (r.Plane.Count > 0)
        {
            sb.Append($"m = 2 pictures, n = {o.PlaneN}:\n");
            foreach (var x in r.Plane)
                sb.Append(ConsoleLine.Wrap($"  S = {SuperpositionPlots.Tag(x.Sparsity),-6} {x.Geometry.Represented.Length} features" +
                    (x.NeighbourGaps is { Length: > 1 } g ? $", neighbours {string.Join(" ", g.Select(a => F(a, "0") + "°"))}" : "") +
                    $", D_i {string.Join(" ", x.Geometry.Represented.Select(i => F(x.Geometry.Dimensionality[i], "0.00")))}", 13)).Append('\n');
        }
        if (r.Phase is { } pd)
        {
            var c = pd.Counts();
            int agree = pd.Cells.Count(x => x.Phase == PhaseTheory.Predict(x.Sparsity, x.RelativeImportance));
            sb.Append(ConsoleLine.Wrap($"phase diagram (n = 2, m = 1, {pd.Rows}×{pd.Cols}, density 1 … {F(1 - pd.Sparsities[^1], "0.###")} × r {F(pd.Ratios[0], "0.##")} … {F(pd.Ratios[^1], "0.##")}): " +
                $"{c[Phase.FirstOnly]} feature 0 only, {c[Phase.SecondOnly]} extra feature only, {c[Phase.Superposition]} antipodal superposition" +
                (c[Phase.BothSameSide] + c[Phase.Neither] > 0 ? $", {c[Phase.BothSameSide] + c[Phase.Neither]} other" : "") +
                $", agrees with the closed-form theory in {agree}/{pd.Cells.Length} cells", 2)).Append('\n');
        }
        return sb.ToString();
    }

    private static void Table(StringBuilder sb, IReadOnlyList<SparsityRun> runs)
    {
        // the orthogonality columns are mean cos² over pairs of represented directions, the same for as many random
        // directions in m dimensions (1/m), and the tight-frame floor (k/m − 1)/(k − 1) no k directions can go below
        sb.Append("  S        loss       represented  m/‖W‖²_F  mean D_i  mean cos²  random  floor\n");
        foreach (var x in runs)
        {
            var g = x.Geometry;
            double meanD = g.Represented.Length > 0 ? g.Represented.Average(i => g.Dimensionality[i]) : double.NaN;
            var s = x.Orthogonality;
            sb.Append(($"  {SuperpositionPlots.Tag(x.Sparsity),-8} {F(x.Trained.EvalLoss, "0.00000"),-10} {g.Represented.Length,-12} " +
                $"{F(g.DimensionsPerFeature),-9} {F(meanD),-9} {(s != null ? F(s.MeanSqCos) : "–"),-10} {(s != null ? F(s.RandomMeanSqCos) : "–"),-7} " +
                (s != null ? F(s.TightFrameFloor) : "–")).TrimEnd()).Append('\n');
        }
        sb.Append("  mean cos²: over pairs of represented directions; random: the same for as many\n" +
                  "  random directions (1/m); floor: the least that many directions can reach\n");
    }
}
