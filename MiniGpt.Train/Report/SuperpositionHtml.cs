using System.Globalization;
using System.Net;
using System.Text;
using MiniGpt.Superposition;

namespace MiniGpt.Train.Report;

/// <summary>superposition.html: one self-contained page (PNGs as base64 data URIs, the reports' CSS inline, no scripts).</summary>
public static class SuperpositionHtml
{
    public static string Page(SuperpositionResult r, IReadOnlyList<PlotImage> plots)
    {
        var o = r.Options;
        var sb = new StringBuilder();
        string E(string s) => WebUtility.HtmlEncode(s);
        string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "–";
        void Img(PlotImage? p, string cls = "plot")
        {
            if (p == null) return;
            sb.Append($"<figure class=\"{cls}\"><img alt=\"{E(p.Title)}\" src=\"data:image/png;base64,{Convert.ToBase64String(p.Png)}\"><figcaption><b>{E(p.Title)}</b>. {E(p.Caption)}</figcaption></figure>\n");
        }
        PlotImage? Plot(string file) => plots.FirstOrDefault(p => p.FileName == SuperpositionPlots.Prefix + file);

        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Toy models of superposition</title>\n<style>\n")
          .Append(HtmlReport.Css).Append("\n</style></head><body>\n");
        sb.Append($"<h1>Toy models of superposition</h1>\n<p class=\"notes\">Elhage et al. 2022. h = W·x, x' = ReLU(WᵀW·x + b), W [m, n]; loss = batch mean of Σ_i I_i·(x_i − x'_i)², " +
                  $"I_i = {F(o.Importance, "0.###")}<sup>i</sup>; each x_i is 0 with probability S, else uniform on [0, 1]. {o.Train.Steps} AdamW steps of {o.Train.BatchSize}, " +
                  $"lr {F(o.Train.Lr, "0.#####")} (cosine to lr/10), seed {o.Seed}; {r.Threads} threads, {F(r.Seconds, "0.0")} s.</p>\n");

        sb.Append($"<h2 id=\"sweep\">n = {o.N} features in m = {o.M} dimensions</h2>\n");
        sb.Append("<p class=\"notes\">Represented: ‖W_i‖ &gt; 0.5. D_i = ‖W_i‖²/Σ_j(Ŵ_i·W_j)²: 1 for a dimension of its own, 1/2 antipodal, 2/5 pentagon. " +
                  "Orthogonality of the represented directions: mean cos² of their pairs against k random directions in m dimensions (E = 1/m) and the tight-frame floor (k/m − 1)/(k − 1), " +
                  "the least any k directions in m dimensions can reach; std of the cosines against 1/√m.</p>\n");
        sb.Append("<table><tr><th>S</th><th>loss</th><th>represented</th><th>m/‖W‖²<sub>F</sub></th><th>mean D_i</th><th>mean |cos|</th><th>random |cos|</th>" +
                  "<th>mean cos²</th><th>random cos²</th><th>floor</th><th>cos std</th><th>1/√m</th></tr>\n");
        foreach (var x in r.Main)
        {
            var g = x.Geometry;
            var s = x.Orthogonality;
            double meanD = g.Represented.Length > 0 ? g.Represented.Average(i => g.Dimensionality[i]) : double.NaN;
            sb.Append($"<tr><td>{SuperpositionPlots.Tag(x.Sparsity)}</td><td>{F(x.Trained.EvalLoss, "0.00000")}</td><td>{g.Represented.Length}</td><td>{F(g.DimensionsPerFeature)}</td><td>{F(meanD)}</td>" +
                      $"<td>{F(s?.MeanAbsCos ?? double.NaN)}</td><td>{F(s?.RandomMeanAbsCos ?? double.NaN)}</td><td>{F(s?.MeanSqCos ?? double.NaN)}</td><td>{F(s?.RandomMeanSqCos ?? double.NaN)}</td>" +
                      $"<td>{F(s?.TightFrameFloor ?? double.NaN)}</td><td>{F(s?.CosStd ?? double.NaN)}</td><td>{F(s?.ExpectedStd ?? double.NaN)}</td></tr>\n");
        }
        sb.Append("</table>\n");
        Img(Plot("dimensionality.png"));
        sb.Append("<div class=\"grid\">");
        foreach (var x in r.Main)
        {
            string t = SuperpositionPlots.Tag(x.Sparsity);
            Img(Plot($"wtw_{t}.png"), "small");
            Img(Plot($"norms_{t}.png"), "small");
        }
        sb.Append("</div>\n");

        if (r.Plane.Count > 0)
        {
            sb.Append($"<h2 id=\"plane\">n = {o.PlaneN} features in m = 2 dimensions</h2>\n<p class=\"notes\">Each arrow is a column W_i; a regular pentagon has neighbours 72° apart and D_i = 0.4.</p>\n");
            sb.Append("<table><tr><th>S</th><th>represented</th><th class=\"l\">angles between neighbours</th><th class=\"l\">D_i</th><th class=\"l\">b</th></tr>\n");
            foreach (var x in r.Plane)
                sb.Append($"<tr><td>{SuperpositionPlots.Tag(x.Sparsity)}</td><td>{x.Geometry.Represented.Length}</td>" +
                          $"<td class=\"l\">{E(x.NeighbourGaps is { Length: > 1 } gaps ? string.Join(", ", gaps.Select(a => F(a, "0.0") + "°")) : "–")}</td>" +
                          $"<td class=\"l\">{E(string.Join(", ", x.Geometry.Dimensionality.Select(d => F(d, "0.00"))))}</td>" +
                          $"<td class=\"l\">{E(string.Join(", ", x.Trained.Model.B.Select(b => F(b, "0.00"))))}</td></tr>\n");
            sb.Append("</table>\n<div class=\"grid\">");
            foreach (var x in r.Plane) Img(Plot($"plane_{SuperpositionPlots.Tag(x.Sparsity)}.png"), "small");
            sb.Append("</div>\n");
        }

        if (r.Phase is { } pd)
        {
            var c = pd.Counts();
            int agree = pd.Cells.Count(x => x.Phase == PhaseTheory.Predict(x.Sparsity, x.RelativeImportance));
            sb.Append("<h2 id=\"phase\">Phase diagram: two features, one dimension</h2>\n");
            sb.Append($"<p>Feature 0 has importance 1, the extra feature 1 has importance r. Each cell trains an n = 2, m = 1 model ({o.PhaseSteps} steps, best of {o.PhaseRestarts} restarts by held-out loss) " +
                      "and reads its phase off W: <b>feature 0 only</b> (the extra feature is not learned), <b>extra feature only</b> (it takes the dimension, feature 0 is dropped), " +
                      "or <b>antipodal superposition</b> (both |W_i| &gt; 0.5 with W_0·W_1 &lt; 0). " +
                      $"Counts: {c[Phase.FirstOnly]} / {c[Phase.SecondOnly]} / {c[Phase.Superposition]}" +
                      (c[Phase.BothSameSide] + c[Phase.Neither] > 0 ? $" (and {c[Phase.BothSameSide] + c[Phase.Neither]} other)" : "") +
                      $"; the learned phase agrees with the closed-form theory (the least of r·(p/3 − p²/4), p/3 − p²/4 and (1 + r)·p²/6, p = 1 − S) in <b>{agree}/{pd.Cells.Length}</b> cells.</p>\n");
            Img(Plot("phase.png"));
        }
        sb.Append("</body></html>\n");
        return sb.ToString();
    }
}
