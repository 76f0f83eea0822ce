using System.Text;
using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>The text summary the circuits verb prints: one line per head, then the headline findings.</summary>
public static class SummaryTable
{
    /// <summary>The widest line of a table (a terminal's width); prose lines are left to the terminal to wrap.</summary>
    public const int TableWidth = 80;

    /// <param name="allHeads">one line for every head; otherwise a model with more than NotableHeads.AllUpTo heads lists its notable ones and counts the rest.</param>
    public static string Format(CircuitsResult r, bool allHeads = false)
    {
        var sb = new StringBuilder();
        var c = r.Config;
        sb.AppendLine($"model: {c.NLayers} layers, d_model {c.DModel}, {c.NHeads} heads × {c.DHead}, {(c.AttnOnly ? "attention-only" : $"d_mlp {c.DMlp}")}, " +
            $"n_ctx {c.NCtx}, d_vocab {c.DVocab}, {(c.HasLayerNorm ? "LayerNorm" : "no LayerNorm")}, {r.Parameters:N0} parameters");
        sb.AppendLine($"data: {r.Data.Description} ({r.Data.Tokens:N0} tokens)");
        if (r.LayerNormFolded) sb.AppendLine("weight circuits: computed on the LayerNorm-folded model");
        if (r.Heads.Count > 0)
        {
            sb.AppendLine();
            // two tables, each within 80 columns (one line per head in both): what the head is and what ablating it does, then
            // its scores, a column per registered score (at least 7 wide), in as many blocks of columns as 80 columns need
            var shown = allHeads ? r.Heads : r.ShownHeads;
            // the role column takes what the other columns leave of 80 (34); a longer role text (several roles) is cut with …
            const int maxRole = TableWidth - 34;
            string Role(HeadReport h) => r.RoleText(h) is var t && t.Length > maxRole ? t[..(maxRole - 1)] + "…" : r.RoleText(h);
            int roleWidth = Math.Max(4, shown.Count > 0 ? shown.Max(h => Role(h).Length) : 0);
            sb.AppendLine("head  " + "role".PadRight(roleWidth) + "  OV-eig  zero-abl  mean-abl");
            foreach (var h in shown)
                sb.AppendLine($"{h.Name,-5} {Role(h).PadRight(roleWidth)}  {h.OvCopying,6:+0.000;-0.000}" +
                    (h.Ablation.Measured ? LossChange.Factor(h.Ablation.RepeatFactor) : "–").PadLeft(10) +
                    (h.Ablation.MeanMeasured ? LossChange.Factor(h.Ablation.MeanRepeatFactor) : "–").PadLeft(10));
            var columns = r.ScoreSet.Select(s => (Score: s, Width: Math.Max(7, s.Header.Length + 1))).ToList();
            for (int first = 0; first < columns.Count;)
            {
                int end = first, width = 6;
                while (end < columns.Count && (end == first || width + columns[end].Width <= TableWidth)) width += columns[end++].Width;
                var block = columns[first..end];
                sb.AppendLine();
                sb.AppendLine("head  " + string.Concat(block.Select(c => c.Score.Header.PadLeft(c.Width - 2) + "  ")).TrimEnd());
                foreach (var h in shown)
                    sb.AppendLine($"{h.Name,-5} " + string.Concat(block.Select(c => h.Score(c.Score.Name).ToString("0.000").PadLeft(c.Width - 2) + "  ")).TrimEnd());
                first = end;
            }
            if (shown.Count < r.Heads.Count)
                sb.AppendLine($"… and {r.Heads.Count - shown.Count} more heads (the table keeps at most {NotableHeads.Max}: those with a role, then each score's top {NotableHeads.TopPerScore}); every head is in circuits.json and report.html (--all-heads lists them here)");
            sb.AppendLine();
            foreach (var score in r.ScoreSet.RoleScores)
            {
                var list = r.WithRole(score).Select(h => $"{h.Name} ({h.Score(score.Name):0.00})").ToList();
                sb.AppendLine($"{score.Role!.Name} heads: {(list.Count > 0 ? string.Join(", ", list) : "none")}");
            }
            if (r.Headline is { } line) sb.AppendLine(line);
            if (r.Clean is { } c0)
            {
                if (r.HeadsByEffect.Count > 1)
                    sb.AppendLine("heads by ablation effect on the repeated-half loss (zero / mean): " +
                        string.Join(", ", r.HeadsByEffect.Select(h => $"{h.Name} {LossChange.Factor(h.Ablation.RepeatFactor)} / {LossChange.Factor(h.Ablation.MeanRepeatFactor)}")));
                foreach (var g in r.GroupsByEffect)
                    sb.AppendLine($"ablating all {g.Role} heads ({string.Join(", ", g.Heads)}) together: repeated-half loss {LossChange.Factor(g.Zero.Repeat / c0.Repeat)} " +
                        $"(mean-ablated {LossChange.Factor((g.Mean?.Repeat ?? double.NaN) / c0.Repeat)}), data loss {LossChange.Factor(g.Zero.Data / c0.Data)} " +
                        $"(mean-ablated {LossChange.Factor((g.Mean?.Data ?? double.NaN) / c0.Data)})");
            }
            if (r.Clean is { } cl)
                sb.AppendLine($"clean loss: {cl.Data:0.0000} on the data" + (cl.DataRepeat is double d ? $", {d:0.0000} on its predictable positions" : "") +
                    $", {cl.Repeat:0.0000} on the repeated half of random sequences");
        }
        sb.AppendLine($"in-context learning score: {r.IclScore:+0.000;-0.000} (loss at position {r.IclLate} minus loss at position {r.IclEarly})" +
            (r.IclNote != null ? "; the loss curve is U-shaped, see the note below" : ""));
        if (r.BigramKl is double kl) sb.AppendLine($"KL(corpus bigrams ‖ model): {kl:0.0000} nats");
        if (r.PathImportance is var (names, imp))
            sb.AppendLine("path terms by importance: " + string.Join(", ", names.Zip(imp).OrderByDescending(x => x.Second).Take(5).Select(x => $"{x.First} {x.Second:+0.000;-0.000}")));
        sb.AppendLine("coding rate (nats, ε = " + r.CodingEps + "): " + string.Join(" → ", r.CodingRates.Select(x => x.ToString("0.0"))));
        foreach (var n in r.Notes) sb.AppendLine($"note: {n}");
        return sb.ToString();
    }
}
