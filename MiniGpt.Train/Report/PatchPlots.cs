using MiniGpt.Data;
using MiniGpt.Patching;

namespace MiniGpt.Train.Report;

/// <summary>
/// Every plot of a <see cref="PatchingResult"/>, in the order patch.html shows them, with stable file names
/// (all starting "patch_", so they can sit in a circuits report folder): per grid the exact and attribution
/// heatmaps on one colour scale and their scatter, per receiver the path-patching grid, the logit lens, and
/// direct logit attribution by head and by part.
/// </summary>
public static class PatchPlots
{
    public const string Prefix = "patch_";

    public static bool IsPlotName(string fileName) =>
        fileName.StartsWith(Prefix, StringComparison.Ordinal) && fileName.EndsWith(".png", StringComparison.Ordinal);

    public static List<PlotImage> Draw(PatchingResult r, TokenText text)
    {
        var plots = new List<PlotImage>();
        var c = r.Config;
        var p = r.Prompts;
        var tokens = Enumerable.Range(0, p.SeqLen).Select(t => PatchCells.PositionLabel(p, text, t)).ToList();
        string tokenAxis = text.HasTokenizer ? "position (the clean prompt's token)" : "position (the clean prompt's token id)";
        string pairNote = p.Batch > 1 ? $" Positions are labelled with pair 0's clean tokens (pad past its end); values are means over the {p.Batch} pairs' targets." : "";
        var names = r.Exact.Select(g => g.Name).Concat(r.Attribution.Select(g => g.Name)).Distinct();
        foreach (string name in names)
        {
            var exact = r.Exact.FirstOrDefault(g => g.Name == name);
            var attr = r.Attribution.FirstOrDefault(g => g.Name == name);
            var any = exact ?? attr!;
            double maxAbs = PatchHeatmap.MaxAbs(exact?.Values ?? [], attr?.Values ?? []);
            var (rows, cols, rowLabels, colLabels, xLabel, yLabel) = Layout(any, c.NHeads, tokens, tokenAxis);
            foreach (var g in new[] { exact, attr })
            {
                if (g == null) continue;
                string method = g.Method == "exact" ? "activation patching" : "attribution patching";
                plots.Add(new PlotImage($"{Prefix}{name}_{g.Method}.png", $"{name}: {method}",
                    $"{Describe(any)}; {(g.Method == "exact" ? "one forward pass per cell" : "first-order estimate from one backward pass")}, " +
                    $"{g.Seconds:0.000} s. {(r.Noising ? "Noising" : "Denoising")}: {PatchCells.Scale(r)} ({r.Metric} {g.Corrupted:0.000} → {g.Clean:0.000}).{pairNote}",
                    PatchHeatmap.Render(g.Values, rows, cols, rowLabels, colLabels, $"{name} ({method})", maxAbs, xLabel, yLabel)));
            }
            if (r.Comparisons.FirstOrDefault(x => x.Name == name) is { } cmp && exact != null && attr != null)
                plots.Add(new PlotImage($"{Prefix}{name}_scatter.png", $"{name}: attribution against exact",
                    $"each cell of the grid; Pearson r = {cmp.Correlation:0.000}, largest gap {cmp.MaxAbsDifference:0.000}{(cmp.WorstCell.Length > 0 ? $" at {PatchCells.Name(any, cmp.WorstCell, p, text)}" : "")}; exact {cmp.ExactSeconds:0.000} s, attribution (all grids) {cmp.AttributionSeconds:0.000} s; {PatchCells.Scale(r)}",
                    PatchScatter.Render(exact.Values, attr.Values, name, cmp.Correlation, PatchCells.Scale(r))));
        }

        foreach (var receiver in r.Paths.GroupBy(x => (x.ReceiverLayer, x.ReceiverHead)))
        {
            var (l, h) = receiver.Key;
            var inputs = receiver.OrderBy(x => x.Input).ToList();
            int senders = l * c.NHeads;
            var values = new double[senders * inputs.Count];
            for (int s = 0; s < senders; s++)
                for (int j = 0; j < inputs.Count; j++) values[s * inputs.Count + j] = inputs[j].Grid.Values[s];
            var rowLabels = Enumerable.Range(0, senders).Select(s => $"L{s / c.NHeads}H{s % c.NHeads}").ToList();
            var colLabels = inputs.Select(x => x.Input.ToString().ToLowerInvariant()).ToList();
            plots.Add(new PlotImage($"{Prefix}path_L{l}H{h}.png", $"Path patching into L{l}H{h}",
                $"each earlier head alone as the sender, its {(r.Noising ? "corrupted" : "clean")} output reaching L{l}H{h} only through its q, k or v input " +
                $"(every other path frozen at the {(r.Noising ? "clean" : "corrupted")} run); {PatchCells.Scale(r)}; " +
                $"{inputs.Sum(x => x.Grid.Seconds):0.000} s.{pairNote}",
                PatchHeatmap.Render(values, senders, inputs.Count, rowLabels, colLabels, $"senders → L{l}H{h}", PatchHeatmap.MaxAbs(values),
                    "receiver's input", "sender head")));
        }

        if (r.LogitLens.Count > 0)
            plots.Add(new PlotImage($"{Prefix}logit_lens.png", "Logit lens",
                "each residual stream decoded through ln_final and W_U: logit difference (solid, left) and the answer's loss (dashed, right) at the targets, clean and corrupted",
                PatchLensPlot.Render(r.LogitLens, r.CorruptedLogitLens)));
        var dla = r.DirectLogitAttribution;
        var headGrid = dla.HeadGrid(c);
        plots.Add(new PlotImage($"{Prefix}dla_heads.png", "Direct logit attribution by head",
            "each head's result z·W_O through the frozen ln_final scale and W_U[:, answer] − W_U[:, wrong], on the clean prompts",
            PatchHeatmap.Render(headGrid, c.NLayers, c.NHeads, Layers(c.NLayers), Heads(c.NHeads), "direct logit attribution", PatchHeatmap.MaxAbs(headGrid),
                "head", "layer")));
        plots.Add(new PlotImage($"{Prefix}dla_parts.png", "Direct logit attribution by part",
            $"every part of the final residual stream; they sum to {dla.Sum:0.0000} against the model's logit difference {dla.LogitDiff:0.0000}",
            PatchDlaPlot.Render(dla)));
        return plots;
    }

    /// <summary>Rows, columns and their labels of a grid as drawn: [layer, pos] and [layer, head] as they are, [layer, head, pos] with a row per head.</summary>
    private static (int Rows, int Cols, List<string> RowLabels, List<string> ColLabels, string XLabel, string YLabel) Layout(
        PatchGrid g, int H, List<string> tokens, string tokenAxis) => g.Axes switch
    {
        ["layer", "pos"] => (g.Shape[0], g.Shape[1], Layers(g.Shape[0]), tokens, tokenAxis, "layer"),
        ["layer", "head"] => (g.Shape[0], g.Shape[1], Layers(g.Shape[0]), Heads(g.Shape[1]), "head", "layer"),
        _ => (g.Shape[0] * g.Shape[1], g.Shape[2], Enumerable.Range(0, g.Shape[0] * g.Shape[1]).Select(i => $"L{i / H}H{i % H}").ToList(), tokens,
            tokenAxis, "head"),
    };

    private static List<string> Layers(int n) => Enumerable.Range(0, n).Select(l => $"L{l}").ToList();
    private static List<string> Heads(int n) => Enumerable.Range(0, n).Select(h => $"H{h}").ToList();

    /// <summary>What a grid's cells are, in words.</summary>
    public static string Describe(PatchGrid g) => g.Name switch
    {
        "resid_pre" => "the residual stream before each block, at one position",
        "attn_out" => "each attention layer's output, at one position",
        "mlp_out" => "each MLP's output, at one position",
        "z" => "each head's output z, at every position",
        "z_by_pos" => "each head's output z, at one (query) position",
        "q" => "each head's queries, at every position",
        "k" => "each head's keys, at every position",
        "v" => "each head's values, at every position",
        "pattern" => "each head's whole attention pattern",
        _ => g.Name,
    };
}
