using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>Draws every plot of a <see cref="CircuitsResult"/>, in the order the report shows them; file names are stable so scripts can pick them up.</summary>
public static class ReportPlots
{
    private static readonly string[] Prefixes = ["attention_", "heads_", "eigenvalues_", "composition_", "training_", "loss_by_position", "embedding_cosines"];

    /// <summary>Whether a file name is one this class writes (so a rerun may replace it).</summary>
    public static bool IsPlotName(string fileName) =>
        fileName.EndsWith(".png", StringComparison.Ordinal) && Prefixes.Any(p => fileName.StartsWith(p, StringComparison.Ordinal));

    public static List<PlotImage> Draw(CircuitsResult r)
    {
        var plots = new List<PlotImage>();
        var c = r.Config;
        if (r.Attention is { } a)
        {
            var labels = a.Tokens.Select(r.Text.Show).ToList();
            foreach (var (l, h, pattern) in a.Heads)
            {
                var head = r.Heads.First(x => x.Layer == l && x.Head == h);
                string role = r.RoleText(head) is var t && t != CircuitsResult.Unclear ? t : "role unclear";
                string scores = string.Join(", ", r.ScoreSet.Select(s => $"{s.DisplayName} {head.Score(s.Name):0.00}"));
                plots.Add(new PlotImage($"attention_L{l}H{h}.png", $"Attention of L{l}H{h} ({role})",
                    $"{scores}, on {a.Half} random tokens repeated once; the dashed lines mark the start of the repeat",
                    AttentionPlot.Render(pattern, labels, a.Half, $"L{l}H{h} attention ({role})")));
            }
        }
        bool wide = !NotableHeads.ShowsAll(r.Heads.Count);
        var shown = r.ShownHeads;
        if (wide)
        {
            // a wide model gets one [layer × head] map per score instead of a line (and a plot) per head
            var rows = Enumerable.Range(0, c.NLayers).Select(l => $"L{l}").ToList();
            var cols = Enumerable.Range(0, c.NHeads).Select(h => $"H{h}").ToList();
            void Map(string file, string title, string caption, Func<HeadReport, double> value, bool signed)
            {
                var grid = r.Heads.Select(value).ToArray();
                plots.Add(new PlotImage(file, title, caption, HeadGridPlot.Render(grid, c.NLayers, c.NHeads, rows, cols, title, signed)));
            }
            foreach (var s in r.ScoreSet)
                Map($"heads_{s.Name}.png", $"{TrainingScoresPlot.Capitalised(s.DisplayName)} score by head", s.Description, h => h.Score(s.Name), false);
            Map("heads_ov_eigenvalue.png", "OV eigenvalue score by head", "Re(Σλ)/Σ|λ| of W_E·W_V·W_O·W_U: +1 copies, −1 suppresses", h => h.OvCopying, true);
            Map("heads_qk_eigenvalue.png", "QK eigenvalue score by head", "Re(Σλ)/Σ|λ| of W_E·W_Q·W_Kᵀ·W_Eᵀ: + a token attends to itself", h => h.QkEigenScore, true);
            if (r.Heads.Any(h => h.Ablation.Measured))
                Map("heads_ablation.png", "Ablation: log₂ of the repeated-half loss ratio by head", "log₂(ablated / clean loss) on the repeated half of random sequences (+1: doubled); grey: not ablated",
                    h => h.Ablation.Measured ? Math.Log2(h.Ablation.RepeatFactor) : double.NaN, true);
        }
        foreach (var h in shown)
        {
            var ov = h.Spectrum("ov"); var qk = h.Spectrum("token_qk");
            plots.Add(new PlotImage($"eigenvalues_{h.Name}.png", $"Eigenvalues of {h.Name}", "● OV, △ QK",
                EigenvaluePlot.Render(h.Name, ov.Eigenvalues, ov.EigenvalueScore, qk.Eigenvalues, qk.EigenvalueScore)));
        }
        if (r.Composition is { } comp)
            foreach (var kind in new[] { CompositionKind.Q, CompositionKind.K, CompositionKind.V })
                foreach (bool sub in new[] { false, true })
                {
                    string k = kind.ToString().ToLowerInvariant();
                    plots.Add(new PlotImage($"composition_{k}_{(sub ? "minus_baseline" : "raw")}.png",
                        $"{kind}-composition ({(sub ? "minus the random baseline" : "raw")})",
                        sub ? $"raw score minus {comp.Baseline(kind):0.000}, the mean score of random matrices of the same shapes ({comp.BaselineSamples} draws)"
                            : "‖W_OV(writer)·W(reader)‖_F / (‖W_OV(writer)‖_F·‖W(reader)‖_F), as TransformerLens",
                        CompositionPlot.Render(comp, kind, sub)));
                }
        plots.Add(new PlotImage("loss_by_position.png", "In-context loss curve", $"mean next-token loss at each position of {r.Data.Description}",
            LossCurvePlot.Render(r.LossByPosition, r.IclEarly, r.IclLate, r.IclScore, c.DVocab)));
        if (r.Training is { Count: > 0 } log && c.NLayers > 0)
        {
            plots.Add(new PlotImage("training_scores.png", "Head scores over training",
                $"the best head's scores at each evaluation of train --track-circuits ({Path.GetFileName(r.TrainingLogPath)}), with the losses",
                TrainingScoresPlot.Summary(log, r.ScoreSet)));
            // one plot per registered score the log has (a log written before a score was registered lacks it)
            var only = wide ? shown.Select(h => (h.Layer, h.Head)).ToList() : null;
            foreach (var s in r.ScoreSet.Where(s => log.Any(e => e.Scores.Has(s.Name))))
                plots.Add(new PlotImage($"training_{s.Name}.png", $"{TrainingScoresPlot.Capitalised(s.DisplayName)} score of {(wide ? "the notable heads" : "every head")} over training",
                    "layer 0 solid, later layers dashed", TrainingScoresPlot.PerHead(log, s, only)));
        }
        plots.Add(new PlotImage("embedding_cosines.png", "Embedding cosines", "pairwise cosines of the rows of W_E (as trained) against N(0, 1/d_model)",
            CosinePlot.Render(r.Cosines, c.DModel)));
        return plots;
    }
}
