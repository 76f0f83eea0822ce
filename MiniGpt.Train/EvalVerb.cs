using System.Globalization;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Train.Progress;
using MiniGpt.Training;

namespace MiniGpt.Train;

public static class EvalVerb
{
    internal static Options Declare() =>
        new Options("eval", "eval: mean next-token cross-entropy of a checkpoint over consecutive non-overlapping windows of a file\n" +
                            "(inputs t[i : i+n_ctx], targets t[i+1 : i+n_ctx+1] for i = 0, n_ctx, 2·n_ctx, …).")
            .Required("checkpoint", "model checkpoint (.safetensors with 'config' metadata)")
            .Required("data", "UTF-8 text (needs the checkpoint's tokenizer) or a .bin of uint16 tokens")
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
        data = PreparedMeta.ValidationSplit(data); // resolved once: the tokens and their bits per byte come from the same file
        int[] tokens = ReadTokens(data, loaded);
        int T = model.Config.NCtx;
        int windows = (tokens.Length - 1) / T;
        if (windows < 1)
            throw new UserError($"'{data}' has {tokens.Length} tokens, fewer than one window of n_ctx+1 = {T + 1}: give more data");
        var (loss, count) = ProgressView.Run(stdout, "eval", sink => Evaluate(model, tokens, batch, gradsPath != null,
            (done, total) => { if (sink.WantsStatus) sink.Report(done, total, $"batch {done}/{total}"); }));
        // bits per byte of the text the targets stand for, comparable across tokenizers
        string? tokJson = loaded.TokenizerJson ?? (TokenFile.IsTokenFile(data) ? PreparedMeta.Beside(data)?.TokenizerJson : null);
        double? bpb = tokJson != null && Trainer.TokensPerByte(Tokenizers.FromJson(tokJson), Windows.Consecutive(tokens, batch, T)) is double tpb
            ? loss * tpb / Math.Log(2) : null;
        if (gradsPath != null)
            SafeTensorsFile.Write(gradsPath, Checkpoint.Tensors(model.Grads, ""),
                new Dictionary<string, string> { ["loss"] = loss.ToString("R", CultureInfo.InvariantCulture), ["checkpoint"] = Path.GetFileName(ckpt) });

        if (o.Bool("json") == true)
            stdout.WriteLine(new JsonObject
            {
                ["loss"] = loss, ["windows"] = windows, ["tokens"] = count, ["bits_per_token"] = loss / Math.Log(2), ["bits_per_byte"] = bpb,
                ["grads"] = gradsPath,
            }.ToJsonString());
        else
            stdout.WriteLine($"loss {loss:F6} ({loss / Math.Log(2):F4} bits/token{(bpb is double b ? $", {b:F4} bits/byte" : "")}) over {windows} windows, {count} tokens" +
                (gradsPath != null ? $"; gradients written to {gradsPath}" : ""));
        return 0;
    }

    /// <summary>Mean loss over all windows; with grads, leaves d(mean loss)/dθ in model.Grads.</summary>
    public static (double Loss, long Tokens) Evaluate(GptModel model, int[] tokens, int batch, bool grads, Action<int, int>? progress = null)
    {
        var e = Evaluator.Run(model, Windows.Consecutive(tokens, batch, model.Config.NCtx), gradients: grads, progress: progress);
        return (e.Loss, e.Tokens);
    }

    internal static int[] ReadTokens(string data, Checkpoint.Loaded loaded)
    {
        int vocab = loaded.Model.Config.DVocab;
        if (TokenFile.IsTokenFile(data) && File.Exists(data) && PreparedMeta.Beside(data) is { } meta)
        {
            // a prepared file says which tokenizer made it: it must be the one the model was trained with
            if (loaded.TokenizerJson != null && loaded.TokenizerJson != meta.TokenizerJson)
                throw new UserError($"'{data}' was prepared with the {meta.TokenizerName} tokenizer ({meta.VocabSize:N0} tokens) but the checkpoint was trained with {(Tokenizers.FromJson(loaded.TokenizerJson) is var t ? $"{t.Name} ({t.VocabSize:N0} tokens)" : "")}: prepare the data with the checkpoint's tokenizer or give text");
            if (meta.VocabSize > vocab)
                throw new UserError($"'{data}' has a vocabulary of {meta.VocabSize:N0} but the checkpoint's d_vocab is {vocab}: prepare the data with the checkpoint's tokenizer");
            using var mapped = new MappedTokens(data, meta);
            return mapped.ReadAll();
        }
        if (TokenFile.IsTokenFile(data)) return TokenFile.ReadBin(data, vocab);
        if (loaded.TokenizerJson == null)
            throw new UserError($"the checkpoint has no tokenizer, so '{data}' cannot be tokenized: give a .bin token file");
        var tok = Tokenizers.FromJson(loaded.TokenizerJson);
        if (tok.VocabSize > vocab) throw new UserError($"the checkpoint's {tok.Name} tokenizer has {tok.VocabSize} tokens but d_vocab is {vocab}: the checkpoint is inconsistent");
        return tok.Encode(TokenFile.ReadText(data), data);
    }
}
