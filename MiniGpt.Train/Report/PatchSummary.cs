using System.Globalization;
using System.Text;
using MiniGpt.Data;
using MiniGpt.Patching;
using MiniGpt.Train.Progress;

namespace MiniGpt.Train.Report;

/// <summary>The patch verb's text summary: the baseline, each grid's strongest cells with attribution's agreement, the paths, the lens and DLA, the timings.</summary>
public static class PatchSummary
{
    public static string Format(PatchingResult r, TokenText text)
    {
        var sb = new StringBuilder();
        string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "–";
        sb.AppendLine(ConsoleLine.Wrap($"pairs: {r.Prompts.Description}", 7));
        sb.AppendLine(r.Noising ? "noising (one corrupted activation patched into the clean run)" : "denoising (one clean activation patched into the corrupted run)");
        sb.AppendLine($"metric {r.Metric}: clean {F(r.Clean)}, corrupted {F(r.Corrupted)}");
        sb.AppendLine(ConsoleLine.Wrap($"grids: {PatchCells.Scale(r)}", 2));
        if (PatchCells.GapWarning(r) is { } warning) sb.AppendLine($"warning: {warning}");
        foreach (string note in r.Notes ?? []) sb.AppendLine($"note: {note}");
        var grids = r.Exact.Count > 0 ? r.Exact : r.Attribution;
        if (grids.Count > 0)
        {
            // two tables of one row per grid, each within ConsoleLine.Columns: what the grid cost and how far attribution
            // agrees with exact patching, then its strongest cells (wrapped under the grid's column when three do not fit)
            const string head = "grid        cells  exact s   attr r  ";
            int gapWidth = ConsoleLine.Columns - head.Length;
            sb.AppendLine();
            sb.AppendLine(head + "worst gap");
            foreach (var g in grids)
            {
                var cmp = r.Comparisons.FirstOrDefault(x => x.Name == g.Name);
                string gap = cmp is { WorstCell.Length: > 0 } ? $"{F(cmp.MaxAbsDifference, "0.00")} at {PatchCells.Name(g, cmp.WorstCell, r.Prompts, text)}" : "–";
                if (gap.Length > gapWidth) gap = gap[..(gapWidth - 1)] + "…";
                sb.AppendLine($"{g.Name,-10} {g.Values.Length,6} {(r.Exact.Count > 0 ? F(g.Seconds) : "–"),8} {(cmp != null ? F(cmp.Correlation) : "–"),8}  {gap}".TrimEnd());
            }
            sb.AppendLine("exact s = seconds of exact patching; attr r = attribution's correlation with it");
            sb.AppendLine("  over the cells; worst gap = the largest |exact − attribution| and its cell");
            sb.AppendLine();
            sb.AppendLine($"{"grid",-10}  strongest cells ({(r.Exact.Count > 0 ? "exact" : "attribution")})");
            foreach (var g in grids)
                sb.AppendLine(ConsoleLine.Wrap($"{g.Name,-10}  " + string.Join(", ", PatchCells.Top(g, r.Prompts, text, 3).Select(x => $"{x.Name} {F(x.Value, "0.00")}")), 12));
        }
        foreach (var receiver in r.Paths.GroupBy(x => $"L{x.ReceiverLayer}H{x.ReceiverHead}"))
        {
            var senders = receiver.Select(x =>
            {
                var best = PatchCells.TopSenders(x, r.Prompts, text, 1);
                return $"{x.Input.ToString().ToLowerInvariant()} ← {(best.Count > 0 ? $"{best[0].Name} {F(best[0].Value, "0.00")}" : "–")}";
            });
            sb.AppendLine(ConsoleLine.Wrap($"path patching into {receiver.Key}: {string.Join(", ", senders)}", 2));
        }
        if (r.LogitLens.Count > 0)
            sb.AppendLine(ConsoleLine.Wrap("logit lens (logit diff clean/corrupted): " +
                string.Join(", ", r.LogitLens.Zip(r.CorruptedLogitLens).Select(x => $"{PatchLensPlot.Short(x.First.Name)} {F(x.First.LogitDiff, "0.00")}/{F(x.Second.LogitDiff, "0.00")}")), 2));
        if (r.Saturation.Length > 0)
        {
            var sat = Enumerable.Range(0, r.Saturation.Length).Where(i => r.Saturation[i] >= 0.9).Select(i => $"L{i / r.Config.NHeads}H{i % r.Config.NHeads} {F(r.Saturation[i], "0.00")}").ToList();
            if (sat.Count > 0)
                sb.AppendLine(ConsoleLine.Wrap($"saturated attention in the {(r.Noising ? "clean" : "corrupted")} run (mean max p ≥ 0.9): {string.Join(", ", sat)} " +
                    "(attribution underestimates q, k and pattern at these heads)", 2));
        }
        var dla = r.DirectLogitAttribution;
        sb.AppendLine(ConsoleLine.Wrap($"direct logit attribution (sum {F(dla.Sum)} of logit diff {F(dla.LogitDiff)}): " +
            string.Join(", ", dla.Parts.OrderByDescending(x => Math.Abs(x.Value)).Take(4).Select(x => $"{x.Name} {Signed(x.Value)}")), 2));
        sb.AppendLine($"times: exact {F(r.ExactSeconds, "0.00")} s, attribution {F(r.AttributionSeconds, "0.000")} s, path {F(r.PathSeconds, "0.00")} s, all {F(r.Seconds, "0.00")} s");
        return sb.ToString();
    }

    /// <summary>x with its sign to 2 decimals ("+2.45", "-0.00"); "+0.00;-0.00" would print "-+0.00" for a negative x that rounds to 0.</summary>
    internal static string Signed(double x) =>
        double.IsFinite(x) ? (x < 0 ? "-" : "+") + Math.Abs(x).ToString("0.00", CultureInfo.InvariantCulture) : "–";

    /// <summary>
    /// The one line circuits prints for its patching section: the top exact head cells of z, k and v and the strongest
    /// path into each receiver ("noising patching of 8 induction pairs (1 = that site alone breaks the repeat): z L0H1 0.96, …").
    /// </summary>
    public static string Brief(PatchingResult r, TokenText text)
    {
        string F(double x) => double.IsFinite(x) ? x.ToString("0.00", CultureInfo.InvariantCulture) : "–";
        var parts = new List<string>();
        foreach (var g in r.Exact.Where(g => g.Name is "z" or "k" or "v"))
            parts.Add($"{g.Name} " + string.Join(", ", PatchCells.Top(g, r.Prompts, text, 2).Select(x => $"{x.Name} {F(x.Value)}")));
        foreach (var receiver in r.Paths.GroupBy(x => $"L{x.ReceiverLayer}H{x.ReceiverHead}"))
        {
            var best = receiver.Select(x => (x.Input, Top: PatchCells.TopSenders(x, r.Prompts, text, 1))).Where(x => x.Top.Count > 0)
                .OrderByDescending(x => Math.Abs(x.Top[0].Value)).FirstOrDefault();
            if (best.Top != null) parts.Add($"path {receiver.Key} {best.Input.ToString().ToLowerInvariant()} ← {best.Top[0].Name} {F(best.Top[0].Value)}");
        }
        string what = r.Noising ? "1 = that site alone breaks the behaviour" : "1 = that site alone restores it";
        string line = $"{(r.Noising ? "noising" : "denoising")} patching of {r.Prompts.Batch} pairs ({what}): {string.Join(" · ", parts)}";
        return PatchCells.GapWarning(r) is { } w ? line + $"\nwarning: {w}" : line;
    }
}
