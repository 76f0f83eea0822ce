using System.Globalization;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Train.Progress;
using MiniGpt.Training;

namespace MiniGpt.Train;

public static class EvalVerb
{
    private static readonly Option<string> Data = Option.Required("data",
        "UTF-8 text (needs the checkpoint's tokenizer), a .bin of uint16 tokens, a folder written by prepare (its val.bin), or 'induction' (a default train run's validation windows; also prints the loss on the predictable positions)", "D");
    private static readonly Option<string?> Grads = Option.OptionalText("grads", "also write d(mean loss)/d(parameter) here, as safetensors with the parameters' names", "none");
    private static readonly Option<bool> Overwrite = Option.Flag("overwrite", "replace an existing --grads file");
    private static readonly Option<int?> BatchSize = Option.Of<int?>("batch-size", "windows per forward pass (does not change the result)", null,
        "8, halved until the activations fit a quarter of the machine's memory", (n, v) => Option.ParseInt(n, v)).Check(b => b is null or > 0, "must be > 0");
    private static readonly Option<bool> Json = Option.Flag("json",
        "print one JSON object instead of text: loss, windows, tokens, bits_per_token, bits_per_byte (null without a tokenizer), grads (--grads' path or null), " +
        "and for induction predictable_loss and predictable_tokens");

    internal static Options Declare() =>
        new Options("eval", "eval: mean next-token cross-entropy of a checkpoint over consecutive non-overlapping windows of a file, from its start\n" +
                            "(inputs t[i : i+n_ctx], targets t[i+1 : i+n_ctx+1] for i = 0, n_ctx, 2·n_ctx, …): a text file, a .bin of token ids or a folder written by\n" +
                            "prepare (its val.bin, the held-out split), or over the induction task's validation windows.",
            SharedOptions.Checkpoint, Data, Grads, Overwrite, BatchSize, Json, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        string ckpt = o.Get(SharedOptions.Checkpoint);
        string data = o.Get(Data);
        int? batchOption = o.Get(BatchSize);
        string? gradsPath = o.Get(Grads);
        // before any work: the gradients never replace the checkpoint, the data or a file that is not a regular one
        if (gradsPath != null) OutputFile.Check("grads", gradsPath, o.Get(Overwrite), ckpt, data);

        var loaded = Checkpoint.Load(ckpt);
        var model = loaded.Model;
        int batch = batchOption ?? EvalData.FittingBatch(model.Config, 8);
        var set = EvalData.Open(data, loaded, batch);
        var e = ProgressView.Run(stdout, "eval", sink => Evaluator.Run(model, set.Batches, gradients: gradsPath != null,
            progress: (done, total) => { if (sink.WantsStatus) sink.Report(done, total, $"batch {done}/{total}"); }));
        double loss = e.Loss;
        // bits per byte of the text the targets stand for, comparable across tokenizers
        double? bpb = set.TokenizerJson != null && Trainer.TokensPerByte(Tokenizers.FromJson(set.TokenizerJson), set.Batches) is double tpb
            ? loss * tpb / Math.Log(2) : null;
        if (gradsPath != null)
            SafeTensorsFile.Write(gradsPath, Checkpoint.Tensors(model.Grads, ""),
                new Dictionary<string, string> { ["loss"] = loss.ToString("R", CultureInfo.InvariantCulture), ["checkpoint"] = Path.GetFileName(ckpt) });

        if (o.Get(Json))
        {
            // a NaN or infinite loss (a diverged model's last finite weights can still overflow) is null: JSON has no NaN or Infinity
            var N = Report.CircuitsJson.N;
            var json = new JsonObject
            {
                ["loss"] = N(loss), ["windows"] = set.Windows, ["tokens"] = e.Tokens, ["bits_per_token"] = N(loss / Math.Log(2)),
                ["bits_per_byte"] = bpb is double bb ? N(bb) : null, ["grads"] = gradsPath,
            };
            // the induction task: train's copy loss, on the positions only an induction head can predict
            if (set.HasMask) { json["predictable_loss"] = e.MaskedLoss is double ml ? N(ml) : null; json["predictable_tokens"] = e.MaskedTokens; }
            stdout.WriteLine(json.ToJsonString());
        }
        else
        {
            // one fact a line, each within 80 columns: the loss, the induction task's copy loss, where the gradients went
            stdout.WriteLine(ConsoleLine.Wrap($"loss {Shown(loss, "F6")} ({Shown(loss / Math.Log(2), "F4")} bits/token{(bpb is double b ? $", {b:F4} bits/byte" : "")}) over {set.Windows} windows, {e.Tokens} tokens", 5));
            if (e.MaskedLoss is double m)
                stdout.WriteLine($"copy loss {Shown(m, "F6")} on its {e.MaskedTokens} predictable positions (train's copy loss)");
            if (gradsPath != null) stdout.WriteLine(ConsoleLine.Wrap($"gradients written to {gradsPath}", 2));
        }
        return 0;
    }

    // a loss as the table shows it: nan, inf or -inf where it is not finite
    private static string Shown(double x, string format) =>
        double.IsNaN(x) ? "nan" : double.IsPositiveInfinity(x) ? "inf" : double.IsNegativeInfinity(x) ? "-inf" : x.ToString(format, CultureInfo.InvariantCulture);
}
