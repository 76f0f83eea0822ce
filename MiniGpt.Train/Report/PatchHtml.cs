using System.Globalization;
using System.Net;
using System.Text;
using MiniGpt.Data;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// The patching section of a self-contained HTML page (PNGs as base64 data URIs, CSS and the sorting script inline):
/// <see cref="Section"/> is what the circuits report.html includes, <see cref="Page"/> wraps it as patch.html.
/// </summary>
public static class PatchHtml
{
    public static string Page(PatchingResult r, string checkpoint, TokenText text, IReadOnlyList<PlotImage> plots)
    {
        string E(string s) => WebUtility.HtmlEncode(s);
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Patching: ").Append(E(Path.GetFileName(checkpoint)))
          .Append("</title>\n<style>\n").Append(HtmlReport.Css).Append(HtmlReport.ViewCss).Append("\n</style></head><body>\n");
        sb.Append($"<h1>Patching {E(Path.GetFileName(checkpoint))}</h1>\n<p class=\"notes\">{E(Path.GetFullPath(checkpoint))} · " +
                  $"{r.Config.NLayers} layers × {r.Config.NHeads} heads · tokenizer: {E(text.TokenizerName ?? "none (token ids)")} · analysed in {r.Seconds:0.00} s</p>\n");
        sb.Append(Section(r, text, plots, heading: 2));
        // the report's script, for its sortable tables (it finds no attention data here and does nothing else)
        sb.Append("<script>\n").Append(ReportScript.Main).Append("\n</script>\n</body></html>\n");
        return sb.ToString();
    }

    /// <summary>The section's HTML. heading is the level of its title (2 in patch.html and in report.html, whose sections are h2).</summary>
    public static string Section(PatchingResult r, TokenText text, IReadOnlyList<PlotImage> plots, int heading = 2)
    {
        var sb = new StringBuilder();
        var p = r.Prompts;
        string E(string s) => WebUtility.HtmlEncode(s);
        string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "–";
        string H(int level) => $"h{Math.Min(6, heading + level)}";
        void Img(PlotImage? img)
        {
            if (img == null) return;
            sb.Append($"<figure class=\"plot\"><img alt=\"{E(img.Title)}\" src=\"data:image/png;base64,{Convert.ToBase64String(img.Png)}\"><figcaption><b>{E(img.Title)}</b>. {E(img.Caption)}</figcaption></figure>\n");
        }
        PlotImage? Plot(string file) => plots.FirstOrDefault(x => x.FileName == PatchPlots.Prefix + file);

        sb.Append($"<{H(0)} id=\"patching\">Causal interventions: patching</{H(0)}>\n");
        if (PatchCells.GapWarning(r) is { } warning) sb.Append($"<p><b>Warning:</b> {E(warning)}.</p>\n");
        foreach (string note in r.Notes ?? []) sb.Append($"<p class=\"notes\">Note: {E(note)}.</p>\n");
        sb.Append($"<p>Pairs: {E(p.Description)}; {p.TargetCount} targets. Metric <code>{E(r.Metric)}</code>: clean <b>{F(r.Clean)}</b>, corrupted <b>{F(r.Corrupted)}</b>. " +
                  (r.Noising
                      ? "Activation patching by <b>noising</b> copies one corrupted activation into the clean run; each cell is " +
                        "(m − m<sub>clean</sub>)/(m<sub>corrupted</sub> − m<sub>clean</sub>): 0 = the clean run, 1 = the corrupted run, so a cell near 1 is a site " +
                        "whose corruption alone breaks the behaviour (what the site is necessary for; denoising asks what it restores alone). " +
                        "Attribution patching estimates every cell at once as (a<sub>corrupted</sub> − a<sub>clean</sub>)·∂m/∂a at the clean run.</p>\n"
                      : "Activation patching by denoising copies one clean activation into the corrupted run; each cell is " +
                        "(m − m<sub>corrupted</sub>)/(m<sub>clean</sub> − m<sub>corrupted</sub>): 0 = the corrupted run, 1 = the clean run. " +
                        "Attribution patching estimates every cell at once as (a<sub>clean</sub> − a<sub>corrupted</sub>)·∂m/∂a at the corrupted run.</p>\n"));
        var clean0 = p.Clean.AsSpan(0, p.Lengths[0]); // pair 0 as given, without its padding
        var corrupted0 = p.Corrupted.AsSpan(0, p.Lengths[0]);
        sb.Append($"<p class=\"notes\">Pair 0, clean:</p><p class=\"tokens\">{E(text.ShowAll(clean0))}</p>\n<p class=\"notes\">corrupted:</p><p class=\"tokens\">{E(text.ShowAll(corrupted0))}</p>\n");
        sb.Append("<p class=\"notes\">Targets of pair 0 (position: answer against wrong): ")
          .Append(E(string.Join(", ", p.Targets[0].Take(12).Select(t => $"{t.Position}: '{text.Show(t.Answer)}' vs '{text.Show(t.Wrong)}'"))))
          .Append(p.Targets[0].Length > 12 ? ", …" : "").Append("</p>\n");

        var grids = r.Exact.Count > 0 ? r.Exact : r.Attribution;
        if (grids.Count > 0)
        {
            sb.Append($"<{H(1)}>Activation and attribution patching</{H(1)}>\n<table class=\"sortable\"><thead><tr><th class=\"l\">grid</th><th class=\"l\">cells</th><th>exact s</th><th>attribution r</th><th>largest gap</th><th class=\"l\">at</th><th class=\"l\">strongest cells</th></tr></thead><tbody>\n");
            foreach (var g in grids)
            {
                var cmp = r.Comparisons.FirstOrDefault(x => x.Name == g.Name);
                string top = string.Join(", ", PatchCells.Top(g, p, text, 3).Select(x => $"{x.Name} {F(x.Value, "0.00")}"));
                sb.Append($"<tr><td class=\"l\"><b>{E(g.Name)}</b></td><td class=\"l\">{E(PatchPlots.Describe(g))}</td><td>{(r.Exact.Count > 0 ? F(g.Seconds) : "–")}</td>" +
                          $"<td>{(cmp != null ? F(cmp.Correlation) : "–")}</td><td>{(cmp != null ? F(cmp.MaxAbsDifference) : "–")}</td><td class=\"l\">{(cmp is { WorstCell.Length: > 0 } ? E(PatchCells.Name(g, cmp.WorstCell, p, text)) : "–")}</td><td class=\"l\">{E(top)}</td></tr>\n");
            }
            sb.Append($"</tbody></table>\n<p class=\"notes\">Exact patching took {F(r.ExactSeconds, "0.00")} s in all; attribution patching {F(r.AttributionSeconds, "0.000")} s for every grid " +
                      $"(one forward of the patches' source, one forward and one backward of the run patched into). Attribution is exact where the metric is linear in the activation " +
                      "and poor where a softmax between the site and the logits saturates: its gradient is then near 0 although patching moves it a long way.</p>\n");
            sb.Append($"<p class=\"notes\">Attention saturation in the {(r.Noising ? "clean" : "corrupted")} run (where attribution takes its gradient): the mean over the targets of the largest attention probability. " +
                      "Near 1, ∂softmax is near 0 and attribution through that head's q, k and pattern reads too small.</p>\n<table><tr><th class=\"l\">layer</th>");
            for (int h = 0; h < r.Config.NHeads; h++) sb.Append($"<th>H{h}</th>");
            sb.Append("</tr>\n");
            for (int l = 0; l < r.Config.NLayers; l++)
            {
                sb.Append($"<tr><td class=\"l\">L{l}</td>");
                for (int h = 0; h < r.Config.NHeads; h++) sb.Append($"<td>{F(r.Saturation[l * r.Config.NHeads + h], "0.00")}</td>");
                sb.Append("</tr>\n");
            }
            sb.Append("</table>\n");
            foreach (var g in grids)
            {
                sb.Append("<div class=\"grid\">");
                Img(Plot($"{g.Name}_exact.png"));
                Img(Plot($"{g.Name}_attribution.png"));
                Img(Plot($"{g.Name}_scatter.png"));
                sb.Append("</div>\n");
            }
        }

        if (r.Paths.Count > 0)
        {
            sb.Append($"<{H(1)}>Path patching</{H(1)}>\n<p class=\"notes\">Wang et al. 2022: a sender head's {(r.Noising ? "corrupted" : "clean")} output reaches the receiver only through its q, k or v input; " +
                      $"every other path is frozen at the {(r.Noising ? "clean" : "corrupted")} run. Senders are each earlier head, the embeddings (embed) and each earlier MLP. An induction head reads the previous-token head through K.</p>\n");
            sb.Append("<table class=\"sortable\"><thead><tr><th class=\"l\">receiver</th><th class=\"l\">input</th><th class=\"l\">strongest senders</th><th>s</th></tr></thead><tbody>\n");
            foreach (var x in r.Paths)
                sb.Append($"<tr><td class=\"l\">L{x.ReceiverLayer}H{x.ReceiverHead}</td><td class=\"l\">{x.Input.ToString().ToLowerInvariant()}</td>" +
                          $"<td class=\"l\">{E(string.Join(", ", PatchCells.TopSenders(x, p, text, 3).Select(t => $"{t.Name} {F(t.Value, "0.00")}")))}</td><td>{F(x.Grid.Seconds)}</td></tr>\n");
            sb.Append("</tbody></table>\n<div class=\"grid\">");
            foreach (var receiver in r.Paths.Select(x => (x.ReceiverLayer, x.ReceiverHead)).Distinct())
                Img(Plot($"path_L{receiver.ReceiverLayer}H{receiver.ReceiverHead}.png"));
            sb.Append("</div>\n");
        }

        sb.Append($"<{H(1)}>Logit lens</{H(1)}>\n");
        Img(Plot("logit_lens.png"));
        sb.Append("<table class=\"sortable\"><thead><tr><th class=\"l\">stream</th><th>logit diff (clean)</th><th>answer loss (clean)</th><th>sequence loss (clean)</th><th>logit diff (corrupted)</th><th>answer loss (corrupted)</th></tr></thead><tbody>\n");
        foreach (var (a, b) in r.LogitLens.Zip(r.CorruptedLogitLens))
            sb.Append($"<tr><td class=\"l\"><code>{E(a.Name)}</code></td><td>{F(a.LogitDiff)}</td><td>{F(a.TargetLoss)}</td><td>{F(a.SequenceLoss)}</td><td>{F(b.LogitDiff)}</td><td>{F(b.TargetLoss)}</td></tr>\n");
        sb.Append("</tbody></table>\n");

        var dla = r.DirectLogitAttribution;
        sb.Append($"<{H(1)}>Direct logit attribution</{H(1)}>\n<p class=\"notes\">The final residual stream split into its parts, each through ln_final with its scale frozen " +
                  $"and W_U[:, answer] − W_U[:, wrong], on the clean prompts. The parts sum to {F(dla.Sum, "0.0000")}; the model's logit difference is {F(dla.LogitDiff, "0.0000")}.</p>\n<div class=\"grid\">");
        Img(Plot("dla_heads.png"));
        Img(Plot("dla_parts.png"));
        sb.Append("</div>\n");
        return sb.ToString();
    }
}
