using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Sae;
using MiniGpt.Train.Progress;
using ScottPlot;

using static MiniGpt.Train.Report.CircuitsJson;

namespace MiniGpt.Train.Report;

/// <summary>
/// The sae verb's folder: the SAE (SAELens layout), sae.json (every number: config, training curve, held-out metrics,
/// each feature's frequency, the report's features), PNGs (training curve, feature density, each shown feature's
/// activation histogram) and a self-contained report.html with each feature's strongest contexts highlighted and the
/// tokens its decoder direction promotes and suppresses.
/// </summary>
public static class SaeReport
{
    public sealed record Written(string Json, int Plots);

    /// <summary>The features to show: alive and not dense, most frequent first (the ones a reader meets most often).</summary>
    public static IReadOnlyList<int> PickFeatures(SaeEvaluationResult e, int count) =>
        Enumerable.Range(0, e.Frequency.Length).Where(i => e.Frequency[i] > 0 && e.Frequency[i] <= e.DenseThreshold)
            .OrderByDescending(i => e.Frequency[i]).ThenBy(i => i).Take(count).ToList();

    public static Written Write(string dir, string checkpoint, SaeTrainer t, SparseAutoencoder sae, SaeEvaluationResult e,
        IReadOnlyList<(int Step, SaeEvaluationResult Result)> during, IReadOnlyList<FeatureSummary> features, SaeGeometryResult geometry, TokenText text, double trainSeconds, string data)
    {
        Directory.CreateDirectory(dir);
        var json = Build(checkpoint, t, sae, e, features, geometry, text, trainSeconds, data);
        // the SAE so far on the first two held-out batches, ten times during training
        json["during_training"] = new JsonArray(during.Select(x => (JsonNode?)new JsonObject
        {
            ["step"] = x.Step, ["tokens"] = x.Result.Tokens, ["l0"] = N(x.Result.L0), ["explained_variance"] = N(x.Result.ExplainedVariance),
            ["mse"] = N(x.Result.Mse), ["loss_recovered"] = N(x.Result.LossRecovered), ["dead"] = x.Result.Dead,
        }).ToArray());
        string jsonText = CircuitsJson.ToJson(json);
        SaeFile.Save(dir, sae, Path.GetFileNameWithoutExtension(checkpoint),
            new Dictionary<string, string> { ["format"] = "pt", ["minigpt_checkpoint"] = Path.GetFileName(checkpoint) });
        var plots = new List<PlotImage>
        {
            new("sae_training.png", "Training", "batch mean over each log interval, in the scaled units training sees (E‖x‖² = d_in)", TrainingPlot(t)),
            new("sae_density.png", "Feature density", $"log10 of each feature's firing frequency on {e.Tokens:N0} held-out tokens; {e.Dead} never fired (left bar)", DensityPlot(e)),
        };
        foreach (var f in features)
            plots.Add(new($"sae_feature_{f.Index}.png", $"Feature {f.Index}", "activations where it fires", Histogram(f)));
        foreach (var p in plots) AtomicFile.Write(Path.Combine(dir, p.FileName), fs => fs.Write(p.Png));
        AtomicFile.WriteAllText(Path.Combine(dir, "sae.json"), jsonText + "\n");
        AtomicFile.WriteAllText(Path.Combine(dir, "report.html"), Html(checkpoint, sae, t, e, features, geometry, text, plots, trainSeconds));
        return new Written(jsonText, plots.Count);
    }

    public static string Summary(SaeTrainer t, SaeEvaluationResult e, SaeGeometryResult g, double trainSeconds)
    {
        var c = t.Sae.Config;
        string F(double x, string f = "0.000") => x.ToString(f, CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        // each line within ConsoleLine.Columns: wrapped after its commas, the rest indented under its label
        sb.AppendLine(ConsoleLine.Wrap($"sae: {c.ArchitectureName}{(c.Architecture == SaeArchitecture.TopK ? $" k={c.K}" : $" λ={F(t.Options.L1Coefficient, "0.###")}")} on {c.HookName}, d_in {c.DIn} → d_sae {c.DSae}", 5));
        sb.AppendLine(ConsoleLine.Wrap($"training: {t.Step} steps × {t.Options.BatchRows} activations in {F(trainSeconds, "0.0")} s, " +
                      $"{F(t.Step * (double)t.Options.BatchRows / trainSeconds, "N0")} act/s, the model ran {t.Store.TokensSeen:N0} tokens", 10));
        sb.AppendLine(ConsoleLine.Wrap($"held out ({e.Tokens:N0} tokens): L0 {F(e.L0, "0.0")}, explained variance {F(e.ExplainedVariance)}, mse {F(e.Mse, "0.0000")}", 2));
        sb.AppendLine(ConsoleLine.Wrap($"loss recovered {F(e.LossRecovered)}: clean {F(e.LossClean, "0.0000")}, with the SAE {F(e.LossSae, "0.0000")}, zero-ablated {F(e.LossZero, "0.0000")}", 2));
        sb.AppendLine(ConsoleLine.Wrap($"features: {e.Dead} dead (never fired held out), {e.Dense} dense (> {F(e.DenseThreshold * 100, "0")} % of tokens), {t.DeadCount()} dead in the last {t.Options.DeadWindow} training steps" +
                      (t.Resampled > 0 ? $", {t.Resampled} resampled" : ""), 10));
        sb.AppendLine(ConsoleLine.Wrap(GeometryLine(g), 2));
        return sb.ToString();
    }

    /// <summary>The dictionary's geometry in one line: its cosines and nearest neighbours against random directions, and both coding rates.</summary>
    public static string GeometryLine(SaeGeometryResult g)
    {
        if (g.Features < 2) return $"geometry: {g.Features} live decoder direction(s), no pairs to compare";
        string F(double x) => x.ToString("0.000", CultureInfo.InvariantCulture);
        return $"geometry of the {g.Features} live decoder directions: cos mean {F(g.Decoder.Mean)} ± {F(g.Decoder.Std)} (random: {F(g.Random.Mean)} ± {F(g.Random.Std)}, 1/√d_in = {F(g.Decoder.ExpectedStd)}), " +
               $"nearest-neighbour |cos| {F(g.DecoderMaxAbsCos)} (random {F(g.RandomMaxAbsCos)}), coding rate {g.DecoderCodingRate.ToString("0.0", CultureInfo.InvariantCulture)} nats (random {g.RandomCodingRate.ToString("0.0", CultureInfo.InvariantCulture)})";
    }

    private static JsonObject Build(string checkpoint, SaeTrainer t, SparseAutoencoder sae, SaeEvaluationResult e, IReadOnlyList<FeatureSummary> features,
        SaeGeometryResult g, TokenText text, double trainSeconds, string data)
    {
        var o = t.Options;
        return new JsonObject
        {
            ["checkpoint"] = checkpoint,
            ["data"] = data,
            ["config"] = JsonNode.Parse(sae.Config.ToSaeLensJson(Path.GetFileNameWithoutExtension(checkpoint))),
            ["training"] = new JsonObject
            {
                ["steps"] = t.Step, ["batch_rows"] = o.BatchRows, ["buffer_rows"] = t.Store.Capacity, ["lr"] = o.Lr, ["l1_coefficient"] = o.L1Coefficient,
                ["l1_warmup"] = o.L1Warmup, ["scale"] = t.Scale, ["seconds"] = trainSeconds, ["activations_per_second"] = t.Step * (double)o.BatchRows / trainSeconds,
                ["model_tokens"] = t.Store.TokensSeen, ["resampled"] = t.Resampled, ["dead_window_steps"] = o.DeadWindow, ["dead_at_end"] = t.DeadCount(),
                ["log"] = new JsonArray(t.History.Select(l => (JsonNode?)new JsonObject
                {
                    ["step"] = l.Step, ["mse"] = N(l.Mse), ["l0"] = N(l.L0), ["explained_variance"] = N(l.ExplainedVariance), ["l1"] = N(l.L1Coefficient), ["lr"] = N(l.Lr), ["dead"] = l.Dead,
                }).ToArray()),
            },
            ["held_out"] = new JsonObject
            {
                ["tokens"] = e.Tokens, ["l0"] = N(e.L0), ["mse"] = N(e.Mse), ["explained_variance"] = N(e.ExplainedVariance),
                ["loss_clean"] = N(e.LossClean), ["loss_sae"] = N(e.LossSae), ["loss_zero_ablated"] = N(e.LossZero), ["loss_recovered"] = N(e.LossRecovered),
                ["dead"] = e.Dead, ["dense"] = e.Dense, ["dense_threshold"] = e.DenseThreshold,
                ["frequency"] = new JsonArray(e.Frequency.Select(f => (JsonNode?)JsonValue.Create(f)).ToArray()),
            },
            // the live features' unit decoder directions against as many random ones (the seeds' near-orthogonality and coding rate)
            ["geometry"] = new JsonObject
            {
                ["features"] = g.Features, ["cos_mean"] = N(g.Decoder.Mean), ["cos_std"] = N(g.Decoder.Std), ["expected_std_random"] = N(g.Decoder.ExpectedStd),
                ["random_cos_mean"] = N(g.Random.Mean), ["random_cos_std"] = N(g.Random.Std),
                ["nearest_abs_cos"] = N(g.DecoderMaxAbsCos), ["random_nearest_abs_cos"] = N(g.RandomMaxAbsCos),
                ["coding_rate"] = N(g.DecoderCodingRate), ["random_coding_rate"] = N(g.RandomCodingRate),
            },
            ["features"] = new JsonArray(features.Select(f => (JsonNode?)new JsonObject
            {
                ["index"] = f.Index, ["frequency"] = f.Frequency, ["max_activation"] = f.MaxActivation, ["mean_activation"] = f.MeanActivation,
                ["promoted"] = new JsonArray(f.Promoted.Select(p => (JsonNode?)new JsonObject { ["token"] = p.Token, ["text"] = text.Show(p.Token), ["logit"] = p.Logit }).ToArray()),
                ["suppressed"] = new JsonArray(f.Suppressed.Select(p => (JsonNode?)new JsonObject { ["token"] = p.Token, ["text"] = text.Show(p.Token), ["logit"] = p.Logit }).ToArray()),
                ["contexts"] = new JsonArray(f.Contexts.Select(x => (JsonNode?)new JsonObject
                {
                    ["position"] = x.Position, ["activation"] = x.Activation, ["text"] = text.ShowAll(x.Tokens),
                    ["tokens"] = new JsonArray(x.Tokens.Select(v => (JsonNode?)v).ToArray()),
                    ["activations"] = new JsonArray(x.Activations.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray()),
                }).ToArray()),
            }).ToArray()),
        };
    }

    private static byte[] TrainingPlot(SaeTrainer t)
    {
        using var plot = new Plot();
        var steps = t.History.Select(l => (double)l.Step).ToArray();
        var ev = plot.Add.Scatter(steps, t.History.Select(l => l.ExplainedVariance).ToArray());
        ev.LegendText = "explained variance";
        var l0 = plot.Add.Scatter(steps, t.History.Select(l => l.L0).ToArray());
        l0.LegendText = "L0";
        l0.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Left.Label.Text = "explained variance";
        plot.Axes.Right.Label.Text = "L0 (active features per token)";
        plot.Axes.Bottom.Label.Text = "step";
        plot.ShowLegend();
        plot.Title("SAE training", 13);
        return PlotImage.Render(plot, 720, 380);
    }

    private static byte[] DensityPlot(SaeEvaluationResult e)
    {
        using var plot = new Plot();
        // bins of log10 frequency from −6 to 0, one bar for the dead features left of them
        const double lo = -6, width = 0.25;
        int bins = (int)(-lo / width);
        var counts = new double[bins + 1];
        foreach (double f in e.Frequency)
        {
            if (f == 0) { counts[0]++; continue; }
            int b = (int)Math.Floor((Math.Log10(f) - lo) / width);
            counts[1 + Math.Clamp(b, 0, bins - 1)]++;
        }
        var bars = new List<Bar> { new() { Position = lo - 0.5, Value = counts[0], Size = 0.4, FillColor = Colors.Gray, LineWidth = 0 } };
        for (int b = 0; b < bins; b++) bars.Add(new Bar { Position = lo + (b + 0.5) * width, Value = counts[b + 1], Size = width * 0.9, FillColor = Colors.SteelBlue, LineWidth = 0 });
        plot.Add.Bars(bars);
        plot.Axes.Bottom.Label.Text = "log10 firing frequency (grey: dead)";
        plot.Axes.Left.Label.Text = "features";
        plot.Title("Feature density", 13);
        return PlotImage.Render(plot, 620, 340);
    }

    private static byte[] Histogram(FeatureSummary f)
    {
        using var plot = new Plot();
        var v = f.NonZeroActivations;
        if (v.Length > 0)
        {
            double max = v.Max();
            const int bins = 30;
            var counts = new double[bins];
            foreach (float a in v) counts[Math.Min(bins - 1, (int)(a / max * bins))]++;
            plot.Add.Bars(Enumerable.Range(0, bins).Select(b => new Bar { Position = (b + 0.5) * max / bins, Value = counts[b], Size = max / bins * 0.9, FillColor = Colors.Crimson.WithAlpha(0.8), LineWidth = 0 }).ToList());
        }
        plot.Axes.Bottom.Label.Text = "activation";
        plot.Axes.Left.Label.Text = "tokens";
        plot.Title($"Feature {f.Index}: {v.Length:N0} activations", 11);
        return PlotImage.Render(plot, 360, 220);
    }

    private static string Html(string checkpoint, SparseAutoencoder sae, SaeTrainer t, SaeEvaluationResult e, IReadOnlyList<FeatureSummary> features,
        SaeGeometryResult g, TokenText text, IReadOnlyList<PlotImage> plots, double trainSeconds)
    {
        string E(string s) => WebUtility.HtmlEncode(s);
        string F(double x, string f = "0.000") => x.ToString(f, CultureInfo.InvariantCulture);
        string Img(PlotImage p) => $"<figure class=\"plot\"><img alt=\"{E(p.Title)}\" src=\"data:image/png;base64,{Convert.ToBase64String(p.Png)}\"><figcaption><b>{E(p.Title)}</b>. {E(p.Caption)}</figcaption></figure>\n";
        var c = sae.Config;
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>SAE of ").Append(E(Path.GetFileName(checkpoint))).Append("</title>\n<style>\n")
          .Append(HtmlReport.Css)
          .Append("\n.ctx { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap; line-height: 1.7; margin: 2px 0; }\n" +
                  ".ctx span { border-radius: 2px; } .ctx .peak { outline: 1px solid #900; } .feature { border-top: 1px solid #ddd; padding-top: 8px; margin-top: 12px; }\n" +
                  ".tok { font-family: ui-monospace, monospace; background: #f3f3f3; padding: 0 3px; margin-right: 4px; }\n</style></head><body>\n");
        sb.Append($"<h1>Sparse autoencoder on {E(c.HookName)} of {E(Path.GetFileName(checkpoint))}</h1>\n");
        sb.Append($"<p class=\"notes\">{E(c.ArchitectureName)}{(c.Architecture == SaeArchitecture.TopK ? $" (k = {c.K})" : $" (λ = {F(t.Options.L1Coefficient, "0.###")})")}, d_in {c.DIn} → d_sae {c.DSae}; " +
                  $"{t.Step} steps × {t.Options.BatchRows} activations in {F(trainSeconds, "0.0")} s.</p>\n");
        sb.Append("<table><tr><th class=\"l\">held-out metric</th><th>value</th></tr>\n");
        void Row(string name, string v) => sb.Append($"<tr><td class=\"l\">{E(name)}</td><td>{E(v)}</td></tr>\n");
        Row("tokens", e.Tokens.ToString("N0", CultureInfo.InvariantCulture));
        Row("L0 (active features per token)", F(e.L0, "0.0"));
        Row("explained variance", F(e.ExplainedVariance));
        Row("MSE per token", F(e.Mse, "0.0000"));
        Row("loss recovered (1 = clean, 0 = zero-ablated)", F(e.LossRecovered));
        Row("loss: clean / with SAE / zero-ablated", $"{F(e.LossClean, "0.0000")} / {F(e.LossSae, "0.0000")} / {F(e.LossZero, "0.0000")}");
        Row("dead features (never fired held out)", e.Dead.ToString(CultureInfo.InvariantCulture));
        Row($"dense features (> {F(e.DenseThreshold * 100, "0")} % of tokens)", e.Dense.ToString(CultureInfo.InvariantCulture));
        sb.Append($"</table>\n<p class=\"notes\">{E(GeometryLine(g))}. With more features than dimensions the directions cannot all be orthogonal; random ones are nearly so, with cosines of spread 1/√d_in.</p>\n<div class=\"grid\">");
        sb.Append(Img(plots[0])).Append(Img(plots[1]));
        sb.Append("</div>\n<h2>Features</h2>\n<p class=\"notes\">The most frequent features that are neither dead nor dense. Each context is a held-out window, " +
                  "its tokens shaded by the feature's activation (darkest = its maximum over the shown contexts; the outlined token is the peak). " +
                  "Promoted and suppressed: the tokens whose logits the feature's decoder direction raises and lowers most directly (W_dec·W_U, through W_out for an MLP's hidden layer).</p>\n");
        foreach (var f in features)
        {
            sb.Append($"<div class=\"feature\" id=\"f{f.Index}\"><h3>Feature {f.Index}</h3><p class=\"notes\">fires on {F(f.Frequency * 100, "0.00")} % of tokens, max {F(f.MaxActivation, "0.00")}, mean {F(f.MeanActivation, "0.00")}</p>\n");
            if (f.Promoted.Count > 0)
            {
                sb.Append("<p>promotes ").Append(string.Concat(f.Promoted.Select(p => $"<span class=\"tok\">{E(text.Show(p.Token))}</span>")))
                  .Append("<br>suppresses ").Append(string.Concat(f.Suppressed.Select(p => $"<span class=\"tok\">{E(text.Show(p.Token))}</span>"))).Append("</p>\n");
            }
            float peak = f.Contexts.Count > 0 ? f.Contexts.Max(x => x.Activation) : 1;
            foreach (var x in f.Contexts)
            {
                sb.Append("<p class=\"ctx\">");
                // up to 24 tokens before the peak and 8 after: enough to read what the feature looks at
                int from = Math.Max(0, x.Position - 24), to = Math.Min(x.Tokens.Length, x.Position + 9);
                for (int i = from; i < to; i++)
                {
                    double a = Math.Clamp(x.Activations[i] / peak, 0, 1);
                    string style = a > 0 ? $" style=\"background: rgba(220, 40, 40, {F(0.1 + 0.8 * a, "0.00")})\"" : "";
                    sb.Append($"<span{(i == x.Position ? " class=\"peak\"" : "")}{style} title=\"{F(x.Activations[i], "0.00")}\">{E(text.Show(x.Tokens[i]))}</span>");
                }
                sb.Append("</p>\n");
            }
            var hist = plots.FirstOrDefault(p => p.FileName == $"sae_feature_{f.Index}.png");
            if (hist != null) sb.Append(Img(hist));
            sb.Append("</div>\n");
        }
        sb.Append("</body></html>\n");
        return sb.ToString();
    }
}
