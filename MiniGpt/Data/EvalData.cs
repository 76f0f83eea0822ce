using MiniGpt.Checkpoints;
using MiniGpt.Training;

namespace MiniGpt.Data;

/// <summary>
/// The one way eval and circuits open evaluation data, so the same --data measures the same windows:
/// - "induction": the induction task's validation windows with the generator and seed of a default train
///   run, the first <see cref="InductionWindows"/> of them at most (the windows a default run validates on),
///   masked to the predictable positions;
/// - a folder written by prepare: its val.bin (the held-out split), through the memory map;
/// - a .bin token file (prepared, with meta.json beside it, or a bare nanoGPT one) or UTF-8 text in the
///   checkpoint's tokenizer: consecutive windows from the start (<see cref="Windows.Consecutive"/>).
/// Batches hold up to batchSize windows; maxBatches keeps the first that many. Only the tokens those
/// windows need are read from a .bin, so a few batches of a large prepared file cost a few pages; text is
/// tokenized whole (a tokenizer cannot start in the middle of a file).
/// </summary>
public static class EvalData
{
    /// <summary>The induction task's validation set of a default train run: batch 32 × min(eval batches, 8).</summary>
    public static int InductionWindows
    {
        get
        {
            var d = new TrainOptions();
            return d.BatchSize * Math.Min(d.EvalBatches, InductionTask.MaxValidationBatches);
        }
    }

    /// <summary>
    /// wanted, halved until a batch's activations (forward and backward scratch, Activations.EstimateFloats) fit in one
    /// .NET array and a quarter of the memory the runtime may use (GCMemoryInfo.TotalAvailableMemoryBytes: the machine's
    /// or the container's limit, as Trainer.EnsureMemory reads it), at least 1: 8 windows of a 1,024-context GPT-2 small would need
    /// 19 GB and 4.2 G floats in one buffer, which .NET cannot allocate.
    /// </summary>
    public static int FittingBatch(MiniGpt.Model.ModelConfig c, int wanted)
    {
        long budget = Math.Min(Array.MaxLength, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 / sizeof(float));
        int b = Math.Max(1, wanted);
        while (b > 1 && MiniGpt.Model.Activations.EstimateFloats(c, b, MiniGpt.Model.GptModel.KeepPatternsByDefault) > budget) b /= 2;
        return b;
    }

    public static EvalSet Open(string data, Checkpoint.Loaded loaded, int batchSize, int maxBatches = int.MaxValue)
    {
        if (batchSize < 1) throw new ArgumentException($"batchSize must be ≥ 1, got {batchSize}");
        if (maxBatches < 1) throw new ArgumentException($"maxBatches must be ≥ 1, got {maxBatches}");
        var c = loaded.Model.Config;
        int T = c.NCtx;
        if (data == "induction")
        {
            var task = new InductionTask(c.DVocab, T, new TrainOptions().Seed);
            var windows = task.ValidationWindows((int)Math.Min((long)batchSize * maxBatches, InductionWindows), batchSize, T);
            return new EvalSet($"the induction task's validation windows ({task.Describe()})", windows, T, Inputs(windows));
        }
        data = PreparedMeta.ValidationSplit(data);
        TokenFile.CheckExists(data); // a missing file is the first thing to say, before whether it could be tokenized
        long need = maxBatches == int.MaxValue ? long.MaxValue : (long)maxBatches * batchSize * T + 1;
        int[] tokens = ReadTokens(data, loaded, need);
        if (tokens.Length < T + 1)
            throw new UserError($"'{data}' has {tokens.Length} tokens, fewer than one window of n_ctx+1 = {T + 1}: give more data");
        var batches = Windows.Consecutive(tokens, batchSize, T, maxBatches);
        long n = 0;
        foreach (var b in batches) n += b.Inputs.Length / T;
        // the tokenizer that says how many bytes of text a token stands for: the checkpoint's, else a prepared file's
        string? tokenizer = loaded.TokenizerJson ?? (TokenFile.IsTokenFile(data) ? PreparedMeta.Beside(data)?.TokenizerJson : null);
        return new EvalSet($"{Path.GetFileName(data)} ({n} consecutive windows of {T} from its start)", batches, T, tokens, tokenizer);
    }

    /// <summary>
    /// The first maxBatches of a training source's own validation batches (the held-out split of a text or
    /// token file, a prepared folder's val.bin, the induction task's validation windows with their mask).
    /// </summary>
    public static EvalSet Validation(IBatchSource source, int batchSize, int seqLen, int maxBatches)
    {
        var batches = source.ValidationBatches(batchSize, seqLen, maxBatches);
        return new EvalSet($"the run's validation windows ({source.Describe()})", batches, seqLen, Inputs(batches), null);
    }

    /// <summary>The windows' inputs end to end: the token stream of generated windows.</summary>
    private static int[] Inputs(IReadOnlyList<EvalBatch> batches)
    {
        var all = new List<int>();
        foreach (var b in batches) all.AddRange(b.Inputs);
        return all.ToArray();
    }

    /// <summary>The tokens of a file in the checkpoint's vocabulary (at most max of a .bin), refusing a file made with another tokenizer.</summary>
    private static int[] ReadTokens(string data, Checkpoint.Loaded loaded, long max)
    {
        int vocab = loaded.Model.Config.DVocab;
        if (TokenFile.IsTokenFile(data) && PreparedMeta.Beside(data) is { } meta)
        {
            // a prepared file says which tokenizer made it: it must be the one the model was trained with
            if (loaded.TokenizerJson != null && loaded.TokenizerJson != meta.TokenizerJson)
                throw new UserError($"'{data}' was prepared with the {meta.TokenizerName} tokenizer ({meta.VocabSize:N0} tokens) but the checkpoint was trained with {(Tokenizers.FromJson(loaded.TokenizerJson) is var t ? $"{t.Name} ({t.VocabSize:N0} tokens)" : "")}: prepare the data with the checkpoint's tokenizer or give text");
            if (meta.VocabSize > vocab)
                throw new UserError($"'{data}' has a vocabulary of {meta.VocabSize:N0} but the checkpoint's d_vocab is {vocab}: prepare the data with the checkpoint's tokenizer");
            using var mapped = new MappedTokens(data, meta);
            return mapped.ReadAll(max);
        }
        if (TokenFile.IsTokenFile(data)) return TokenFile.ReadBin(data, vocab, max);
        if (loaded.TokenizerJson == null)
            throw new UserError($"the checkpoint has no tokenizer, so '{data}' cannot be tokenized: give a .bin token file");
        var tok = Tokenizers.FromJson(loaded.TokenizerJson);
        if (tok.VocabSize > vocab) throw new UserError($"the checkpoint's {tok.Name} tokenizer has {tok.VocabSize} tokens but d_vocab is {vocab}: the checkpoint is inconsistent");
        return tok.Encode(TokenFile.ReadText(data), data);
    }
}
