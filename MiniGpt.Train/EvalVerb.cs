using System.Globalization;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Train.Progress;
using MiniGpt.Training;

namespace MiniGpt.Train;

public static class EvalVerb
{
    internal static Options Declare() =>
        new Options("eval", "eval: mean next-token cross-entropy of a checkpoint over consecutive non-overlapping windows of a file, from its start\n" +
                            "(inputs t[i : i+n_ctx], targets t[i+1 : i+n_ctx+1] for i = 0, n_ctx, 2·n_ctx, …), or over the induction task's validation windows.")
            .Required("checkpoint", "model checkpoint (.safetensors with 'config' metadata)")
            .Required("data", "UTF-8 text (needs the checkpoint's tokenizer), a .bin of uint16 tokens, a folder written by prepare (its val.bin), or 'induction' (a default train run's validation windows; also prints the loss on the predictable positions)")
            .Add("grads", "none", "also write d(mean loss)/d(parameter) here, as safetensors with the parameters' names")
            .Add("batch-size", "8", "windows per forward pass (does not change the result)")
            .Flag("json", "print one JSON object (loss, windows, tokens, bits_per_token) instead of text")
            .Add("threads", "all cores", "worker threads");

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        string ckpt = o.Str("checkpoint") ?? throw new UsageError("eval needs --checkpoint F");
        string data = o.Str("data") ?? throw new UsageError("eval needs --data D");
        int batch = o.Int("batch-size") ?? 8;
        if (batch < 1) throw new UsageError($"--batch-size must be > 0, got {batch}");
        string? gradsPath = o.Str("grads");

        var loaded = Checkpoint.Load(ckpt);
        var model = loaded.Model;
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

        if (o.Bool("json") == true)
        {
            var json = new JsonObject
            {
                ["loss"] = loss, ["windows"] = set.Windows, ["tokens"] = e.Tokens, ["bits_per_token"] = loss / Math.Log(2), ["bits_per_byte"] = bpb,
                ["grads"] = gradsPath,
            };
            // the induction task: the loss train prints as "repeat", on the positions only an induction head can predict
            if (set.HasMask) { json["predictable_loss"] = e.MaskedLoss; json["predictable_tokens"] = e.MaskedTokens; }
            stdout.WriteLine(json.ToJsonString());
        }
        else
            stdout.WriteLine($"loss {loss:F6} ({loss / Math.Log(2):F4} bits/token{(bpb is double b ? $", {b:F4} bits/byte" : "")}) over {set.Windows} windows, {e.Tokens} tokens" +
                (e.MaskedLoss is double m ? $"; {m:F6} on its {e.MaskedTokens} predictable positions" : "") +
                (gradsPath != null ? $"; gradients written to {gradsPath}" : ""));
        return 0;
    }
}
