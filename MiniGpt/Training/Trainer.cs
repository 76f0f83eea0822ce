using System.Diagnostics;
using System.Globalization;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Training;

/// <summary>
/// One line of training progress, for the console and for tests. Elapsed is the run's training time across
/// resumes (<see cref="Trainer.ElapsedBefore"/> plus this process's); TokensPerSecond and Eta leave out the
/// warm-up steps of this process (<see cref="StepRate"/>). RepeatLoss is the copy loss: the mean loss on the
/// validation positions whose target is a predictable copy (the induction task's mask; null for other data).
/// </summary>
public sealed record TrainLog(long Step, float Loss, float? ValLoss, float? RepeatLoss, float Lr, float GradNorm, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta)
{
    /// <summary>Validation bits per UTF-8 byte of the predicted text, when the data has a tokenizer (comparable across tokenizers).</summary>
    public float? ValBitsPerByte { get; init; }
}

/// <summary>
/// The training loop: sample a batch, forward, backward, clip, step, with periodic validation and
/// checkpoints. Everything that decides the next step (weights, moments, step, data RNG) is saved in
/// the checkpoint pair, so <see cref="Resume"/> continues bit for bit.
/// </summary>
public sealed class Trainer
{
    public TrainOptions Options { get; }
    public GptModel Model { get; }
    public Optimizer Optimizer { get; }
    public IBatchSource Data { get; }
    public ITokenizer? Tokenizer { get; }
    public string? TokenizerJson { get; }
    public List<TrainLog> History { get; } = new();

    private Rng _dataRng;
    private readonly int[] _x, _y;
    private readonly IReadOnlyList<EvalBatch> _val;

    /// <summary>Validation tokens per byte of text they stand for: loss·this/ln 2 is bits per byte.</summary>
    private readonly double? _valTokensPerByte;

    /// <param name="tokenizer">the tokenizer the checkpoints carry (a fine-tuning run's is F's).</param>
    /// <param name="dataIsText">whether data was encoded with it (text or a prepared folder), so bits per byte mean something;
    /// false for the induction task or a bare .bin fine-tuned from a checkpoint with a tokenizer.</param>
    private Trainer(TrainOptions o, GptModel model, IBatchSource data, ITokenizer? tokenizer, Rng dataRng, bool dataIsText = true)
    {
        Options = o; Model = model; Data = data; Tokenizer = tokenizer; TokenizerJson = tokenizer?.ToJson(); _dataRng = dataRng;
        Optimizer = new Optimizer(model, o.Optimizer, o.Beta1, o.Beta2, 1e-8f, o.WeightDecay);
        int T = model.Config.NCtx;
        _x = new int[o.BatchSize * T];
        _y = new int[o.BatchSize * T];
        model.EnsureBatch(o.BatchSize);
        _val = data.ValidationBatches(o.BatchSize, T, o.EvalBatches);
        if (tokenizer != null && dataIsText) _valTokensPerByte = TokensPerByte(tokenizer, _val);
    }

    /// <summary>
    /// The validation batches each evaluation runs: o.EvalBatches unless the data holds fewer (the induction task
    /// stops at InductionTask.MaxValidationBatches, a short validation split at its length), as config.json records.
    /// </summary>
    public int ValidationBatchCount => _val.Count;

    /// <summary>Targets over their bytes: each target token is a prediction of TokenBytes(target) bytes of text.</summary>
    public static double? TokensPerByte(ITokenizer tok, IEnumerable<EvalBatch> batches)
    {
        long tokens = 0, bytes = 0;
        foreach (var batch in batches)
            foreach (int id in batch.Targets)
            {
                tokens++;
                if (id < tok.VocabSize) bytes += tok.TokenBytes(id).Length;
            }
        return bytes > 0 ? (double)tokens / bytes : null;
    }

    /// <summary>Bits per byte for a mean loss in nats per token over the validation set.</summary>
    public float? BitsPerByte(float loss) => _valTokensPerByte is double r ? (float)(loss * r / Math.Log(2)) : null;

    /// <summary>Builds the data and a freshly initialised model from options (running the given kernels; null: Kernels.Default).</summary>
    public static Trainer Start(TrainOptions o, IKernels? kernels = null)
    {
        // before Resolved, which would give n_ctx the data's default rather than F's
        if (o.InitFrom != null) return StartFrom(o, Checkpoint.Load(o.InitFrom, kernels));
        o = o.Resolved();
        o.Validate();
        var (data, tok, vocab) = LoadData(o, null);
        var cfg = ModelConfigFor(o, vocab);
        EnsureMemory(cfg, o);
        var model = GptModel.Create(cfg, o.Seed, kernels);
        var t = new Trainer(o, model, data, tok, new Rng(o.Seed ^ 0xDA7A_5EEDUL));
        if (o.TieEmbeddings) t.TieUnembed();
        return t;
    }

    /// <summary>
    /// Fine-tuning (--init-from, nanoGPT's init_from): the run starts from <paramref name="from"/>'s weights, shape and
    /// tokenizer (of o.Model only n_ctx is read, and it may only be shorter: W_pos keeps its first rows, as nanoGPT's crop_block_size; the other shape fields are F's, and the CLI refuses options that disagree with them),
    /// with a fresh optimizer (zero moments), step 0, the schedule from its start and the data order of o.Seed.
    /// With o.TieEmbeddings, F's W_U must already be W_Eᵀ (a GPT-2's is): tying another model would change it.
    /// from is the loaded o.InitFrom (the caller may have loaded it already to check its options against it); hand it
    /// over: with a shorter n_ctx its model is copied and let go before the optimizer's arrays are made.
    /// </summary>
    public static Trainer StartFrom(TrainOptions o, Checkpoint.Loaded from)
    {
        string src = o.InitFrom ?? throw new ArgumentException("StartFrom needs o.InitFrom, the checkpoint's path", nameof(o));
        var fc = from.Model.Config;
        if (fc.NormalizationType == "LNPre")
            throw new UserError($"'{o.InitFrom}' is a LayerNorm-folded model (LNPre), which training does not build: fine-tune the checkpoint it was folded from");
        int nCtx = o.Model.NCtx == ModelConfig.Unset ? fc.NCtx : o.Model.NCtx;
        if (nCtx > fc.NCtx)
            throw new UserError($"n_ctx {nCtx} is longer than the {fc.NCtx} of '{o.InitFrom}': W_pos has no rows for positions beyond it; give --n-ctx ≤ {fc.NCtx} or leave it out");
        var tok = from.TokenizerJson != null ? Tokenizers.FromJson(from.TokenizerJson) : null;
        var cfg = fc with { NCtx = nCtx };
        o = (o with
        {
            Model = cfg, Tokenizer = tok?.Name ?? o.Tokenizer,
        }).Resolved();
        o.Validate();
        if (o.TieEmbeddings && !HasTiedEmbeddings(from.Model))
            throw new UserError($"'{o.InitFrom}' has a W_U that is not W_Eᵀ, so it cannot train tied without changing the model: leave out --tie-embeddings");
        var (data, dataTok, vocab) = LoadData(o, (tok, src));
        if (vocab != fc.DVocab) throw new UserError($"'{o.Data}' gives d_vocab {vocab} but '{o.InitFrom}' has {fc.DVocab}: the data must use the checkpoint's token ids");
        // hashed once the cheap checks have passed (about 1 s for GPT-2 small's 500 MB)
        o = o with { InitSource = o.InitSource ?? InitSource.Of(src, from) };
        EnsureMemory(cfg, o);
        var model = from.Model;
        if (nCtx != fc.NCtx)
        {
            model = Cropped(model, cfg);
            // the source (and the loader's temporaries) go before the gradients and moments arrive: measured for GPT-2 small
            // cropped to n_ctx 64, peak RSS 3.7 GB instead of 4.1 (3.0 from scratch); the caller hands over its only reference
            from = null!;
            if (model.ParameterCount > 1 << 24)
            {
                System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
                GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            }
        }
        return new Trainer(o, model, data, tok, new Rng(o.Seed ^ 0xDA7A_5EEDUL), dataIsText: dataTok != null);
    }

    /// <summary>The same model with a shorter context: every parameter copied, W_pos [n_ctx, d_model] its first rows.</summary>
    private static GptModel Cropped(GptModel m, ModelConfig cfg)
    {
        var c = new GptModel(cfg, m.Kernels);
        foreach (var t in c.Params.Tensors)
            m.Params[t.Name].Span[..t.Span.Length].CopyTo(t.Span); // W_pos is row-major: its first n_ctx·d_model floats
        return c;
    }

    /// <summary>Whether W_U is exactly W_Eᵀ, as in GPT-2 (<see cref="GptModel.HasTiedEmbeddings"/>).</summary>
    public static bool HasTiedEmbeddings(GptModel m) => m.HasTiedEmbeddings();

    /// <summary>
    /// The model a run builds: its options' model (resolved, see TrainOptions.Resolved) with the values derived
    /// from others filled in as TransformerLens derives them (d_head = d_model / n_heads, d_mlp = 4·d_model)
    /// and d_vocab from the data.
    /// </summary>
    public static ModelConfig ModelConfigFor(TrainOptions o, int vocab)
    {
        var m = o.Resolved().Model;
        int dHead = m.DHead != ModelConfig.Unset ? m.DHead : m.NHeads > 0 && m.DModel % m.NHeads == 0 ? m.DModel / m.NHeads
            : throw new UserError($"d_model {m.DModel} is not divisible by n_heads {m.NHeads}: pass --d-head or change one of them");
        int dMlp = m.AttnOnly ? 0 : m.DMlp != ModelConfig.Unset ? m.DMlp : 4 * m.DModel;
        return (m with { DHead = dHead, DMlp = dMlp, DVocab = vocab }).Validate();
    }

    /// <summary>Refuses, before allocating, a config whose parameters, gradients, moments and activations exceed free memory.</summary>
    public static void EnsureMemory(ModelConfig cfg, TrainOptions o)
    {
        long pars = ParameterLayout.Declare(cfg).CountElements();
        long bytes = 4 * (4 * pars + Activations.EstimateFloats(cfg, o.BatchSize, GptModel.KeepPatternsByDefault));
        long avail = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > avail * 0.9)
            throw new UserError($"this config needs about {bytes / (1 << 20):N0} MiB (parameters, gradients, Adam moments, activations{(GptModel.KeepPatternsByDefault ? " with every attention pattern kept" : "")}) but {avail / (1 << 20):N0} MiB are available: reduce --batch-size, --n-ctx or the model size");
    }

    /// <summary>
    /// The run's batches, tokenizer and d_vocab. fixedTok: a fine-tuning run's tokenizer (its checkpoint's, null if it
    /// has none) and that checkpoint's path for errors: text is encoded with it, a prepared folder must have been
    /// prepared with it; null: the tokenizer comes from --tokenizer or the prepared folder.
    /// </summary>
    private static (IBatchSource Data, ITokenizer? Tokenizer, int Vocab) LoadData(TrainOptions o, (ITokenizer? Tok, string From)? fixedTok)
    {
        int T = o.Model.NCtx;
        if (fixedTok == null && o.Tokenizer != "char" && (o.Data == "induction" || (TokenFile.IsTokenFile(o.Data) && PreparedFiles(o.Data) == null)))
            throw new UserError($"--tokenizer {o.Tokenizer} applies to text: '{o.Data}' is {(o.Data == "induction" ? "the generated induction task" : "a bare token file")}; give a text file or a folder written by prepare");
        if (o.Data == "induction")
        {
            int vocab = o.Model.DVocab != ModelConfig.Unset ? o.Model.DVocab : Math.Max(64, 2 * T); // ≥ n_ctx+1: windows of distinct tokens (see InductionTask)
            return (new InductionTask(vocab, T, o.Seed), null, vocab);
        }
        if (PreparedFiles(o.Data) is (string trainBin, PreparedMeta meta))
        {
            // prepared by the prepare verb: the tokenizer comes from meta.json, the tokens stream from a memory map
            var ptok = Tokenizers.FromJson(meta.TokenizerJson);
            if (fixedTok is (var ftok, string from) && (ftok == null || ftok.ToJson() != ptok.ToJson()))
                throw new UserError(ftok == null
                    ? $"'{trainBin}' was prepared with the {ptok.Name} tokenizer but '{from}' has no tokenizer: fine-tune it on token ids (a .bin with its d_vocab, or induction)"
                    : $"'{trainBin}' was prepared with {(ptok.Name == ftok.Name ? $"a different {ptok.Name} vocabulary" : $"the {ptok.Name} tokenizer")} but '{from}' uses {ftok.Name}: prepare the text again with --tokenizer {ftok.Name}, or give the text itself");
            if (fixedTok == null && o.Tokenizer != "char" && o.Tokenizer != ptok.Name)
                throw new UserError($"'{trainBin}' was prepared with the {ptok.Name} tokenizer, not {o.Tokenizer}: drop --tokenizer or prepare the text again");
            int pv = FitVocab(ptok, o.Model.DVocab, trainBin);
            string valBin = o.Val ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(trainBin))!, "val.bin");
            var valMeta = PreparedMeta.Beside(valBin);
            if (valMeta == null || valMeta.TokenizerJson != meta.TokenizerJson)
                throw new UserError($"'{valBin}' was not prepared with the same tokenizer as '{trainBin}' (its meta.json differs or is missing): prepare both from one corpus");
            var trainMap = new MappedTokens(trainBin, meta);
            var valMap = new MappedTokens(valBin, valMeta);
            if (trainMap.Length < T + 1 || valMap.Length < T + 1)
                throw new UserError($"'{trainBin}' or '{valBin}' holds fewer than one window of n_ctx+1 = {T + 1} tokens: prepare more text or use a smaller --n-ctx");
            return (new MappedWindows(trainMap, valMap, $"{trainBin} ({Describe(ptok)})"), ptok, pv);
        }
        if (TokenFile.IsTokenFile(o.Data))
        {
            int vocab = o.Model.DVocab != ModelConfig.Unset ? o.Model.DVocab : throw new UserError($"'{o.Data}' is a token file: pass its vocabulary size with --d-vocab");
            var all = TokenFile.ReadBin(o.Data, vocab);
            var (tr, va) = o.Val != null ? (all, TokenFile.ReadBin(o.Val, vocab)) : Split(all);
            return (new TokenWindows(tr, va, o.Data, T), null, vocab);
        }
        if (fixedTok is (null, string noTok))
            throw new UserError($"'{noTok}' has no tokenizer to encode '{o.Data}' with (it was trained on token ids): fine-tune it on a .bin of its token ids or on induction");
        string text = TokenFile.ReadText(o.Data);
        var tok = fixedTok?.Tok ?? Tokenizers.Create(o.Tokenizer, text);
        int v = FitVocab(tok, o.Model.DVocab, o.Data);
        var ids = tok.Encode(text, o.Data);
        var (train, val) = o.Val != null ? (ids, tok.Encode(TokenFile.ReadText(o.Val), o.Val)) : Split(ids);
        return (new TokenWindows(train, val, $"{o.Data} ({Describe(tok)})", T), tok, v);
    }

    private static string Describe(ITokenizer tok) => tok is TiktokenTokens tt ? tt.Describe() : $"{tok.Name}, {tok.VocabSize:N0} tokens";

    /// <summary>A prepared train.bin (given itself or as its folder) and its meta.json, or null for other data.</summary>
    public static (string TrainBin, PreparedMeta Meta)? PreparedFiles(string data)
    {
        string bin = Directory.Exists(data) ? Path.Combine(data, "train.bin") : data;
        if (Directory.Exists(data) && !File.Exists(Path.Combine(data, PreparedMeta.FileName)))
            throw new UserError($"'{data}' is a folder without {PreparedMeta.FileName}: give a text file, or a folder written by prepare");
        if (!TokenFile.IsTokenFile(bin) || !File.Exists(bin)) return null;
        return PreparedMeta.Beside(bin) is { } meta ? (bin, meta) : null;
    }

    /// <summary>d_vocab: the tokenizer's size, or --d-vocab when that is at least as large (padding rows never seen).</summary>
    public static int FitVocab(ITokenizer tok, int dVocab, string data)
    {
        if (dVocab == ModelConfig.Unset) return tok.VocabSize;
        if (dVocab < tok.VocabSize)
            throw new UserError($"'{data}' needs {tok.VocabSize:N0} token ids with the {tok.Name} tokenizer but --d-vocab is {dVocab}: raise --d-vocab to at least {tok.VocabSize} or leave it out");
        return dVocab;
    }

    /// <summary>First 90 % for training, last 10 % for validation (nanoGPT's split).</summary>
    public static (int[] Train, int[] Val) Split(int[] all)
    {
        int n = (int)(all.Length * 0.9);
        return (all[..n], all[n..]);
    }

    /// <summary>One optimisation step; returns the training loss. Allocates nothing.</summary>
    public float Step()
    {
        var o = Options;
        int B = o.BatchSize, T = Model.Config.NCtx;
        StepProfiler.Enter(StepPhase.Data);
        Data.Sample(ref _dataRng, _x, _y, B, T);
        float loss = Model.Forward(_x, _y, B, T);
        StepProfiler.Enter(StepPhase.ZeroGrad);
        Model.ZeroGrad();
        Model.Backward(1f / (B * T));
        StepProfiler.Enter(StepPhase.Clip);
        if (o.TieEmbeddings) FoldTiedGradient();
        // clipping's factor is applied by the optimizer as it reads each gradient, not in a pass of its own
        // (at GPT-2 124M that pass read and wrote 1 GB: 20 ms a step); Model.Grads keep the unclipped gradient
        LastGradNorm = GradClip.GlobalNorm(Model.Grads.Buffer);
        // the norm is a sum over every gradient, so it is finite exactly when all of them are (clipping
        // leaves a NaN/Inf gradient non-finite: Inf·0 = NaN): one check costs nothing per step, and the
        // update is skipped so the weights in memory stay the last good ones
        if (!float.IsFinite(loss) || !float.IsFinite(LastGradNorm)) throw Diverged(loss);
        LastLr = LrSchedule.At(Optimizer.Step, o.Lr, o.MinLr, o.WarmupSteps, o.Steps);
        StepProfiler.Enter(StepPhase.Optimizer);
        Optimizer.Update(LastLr, GradClip.ScaleFor(LastGradNorm, o.GradClip));
        if (o.TieEmbeddings) TieUnembed();
        StepProfiler.Enter(StepPhase.Other);
        return loss;
    }

    public float LastGradNorm { get; private set; }

    /// <summary>The inputs and targets [B, T] of the last step (for tests that recompute it).</summary>
    public ReadOnlySpan<int> LastInputs => _x;
    public ReadOnlySpan<int> LastTargets => _y;

    // the training losses since the last log line, whose mean the next line shows: saved with the state so
    // that a run resumed between two log lines logs the same mean, bit for bit, as one never stopped
    private double _lossSum;
    private int _lossCount;

    /// <summary>The step of the checkpoint last written by <see cref="Save"/> (or resumed from); -1 before any.</summary>
    public long LastSavedStep { get; private set; } = -1;

    /// <summary>
    /// The error for a step whose loss or gradients are NaN/Inf, naming where it appeared first: the loss
    /// (then the first non-finite activation of the forward pass, in hook order), or the first gradient in
    /// backward order (unembed first, embed last). Only runs on failure, so it may scan and allocate.
    /// </summary>
    private UserError Diverged(float loss)
    {
        long step = Optimizer.Step + 1;
        string where;
        if (!float.IsFinite(loss))
        {
            string? act = null;
            // the causal mask leaves −∞ in the attention scores on purpose: only NaN or +∞ is a fault there
            foreach (var t in Model.Cache?.Acts.Tensors ?? [])
                if (t.Name.EndsWith("attn_scores", StringComparison.Ordinal) ? HasNaNOrPosInf(t.Span) : !IsFinite(t.Span)) { act = t.Name; break; }
            where = $"the loss is {loss}" + (act != null ? $" (first non-finite activation: {act})" : "");
        }
        else
        {
            string? grad = null;
            var ts = Model.Grads.Tensors;
            for (int i = ts.Count - 1; i >= 0 && grad == null; i--)
                if (!IsFinite(ts[i].Span)) grad = ts[i].Name;
            where = grad != null ? $"the gradient of {grad} holds NaN or Inf (first in backward order)"
                : $"the gradient norm overflows ({LastGradNorm})";
        }
        string kept = LastSavedStep >= 0 ? $"the last good checkpoint, step {LastSavedStep}, is kept at {Options.Out}" : "no checkpoint was written";
        return new UserError($"training diverged at step {step}: {where}; lower --lr or raise --warmup-steps; {kept}");
    }

    private static bool IsFinite(ReadOnlySpan<float> s)
    {
        foreach (float x in s) if (!float.IsFinite(x)) return false;
        return true;
    }

    private static bool HasNaNOrPosInf(ReadOnlySpan<float> s)
    {
        foreach (float x in s) if (float.IsNaN(x) || float.IsPositiveInfinity(x)) return true;
        return false;
    }
    public float LastLr { get; private set; }

    // Tied embeddings (nanoGPT's W_U = W_Eᵀ): one parameter, W_E, gets both gradients; W_U is its copy.
    // W_E is used twice, x₀ = W_E[token] and logits = x·W_U = x·W_Eᵀ, so ∂L/∂W_E = gE + gUᵀ, the sum that the
    // clip and AdamW then see as one tensor (W_U's own gradient is zeroed, so its moments stay 0, and the
    // update it would get is overwritten by TieUnembed). A tied model has no unembedding bias, as GPT-2 and
    // nanoGPT (lm_head bias=False): b_U's gradient is zeroed too, so b_U stays at its start (0) and the
    // model keeps GPT-2's form (convert --to hf writes it).
    private void FoldTiedGradient()
    {
        var c = Model.Config;
        var gE = Model.Grads["embed.W_E"].Span; var gU = Model.Grads["unembed.W_U"].Span;
        for (int v = 0; v < c.DVocab; v++)
            for (int d = 0; d < c.DModel; d++) gE[v * c.DModel + d] += gU[d * c.DVocab + v];
        gU.Clear();
        Model.Grads["unembed.b_U"].Span.Clear();
    }

    private void TieUnembed()
    {
        var c = Model.Config;
        var wE = Model.Params["embed.W_E"].Span; var wU = Model.Params["unembed.W_U"].Span;
        for (int v = 0; v < c.DVocab; v++)
            for (int d = 0; d < c.DModel; d++) wU[d * c.DVocab + v] = wE[v * c.DModel + d];
    }

    /// <summary>Mean validation loss, and the loss on the positions the validation set masks (the induction task's predictable ones).</summary>
    public (float Loss, float? RepeatLoss) Evaluate()
    {
        var e = Evaluator.Run(Model, _val);
        return ((float)e.Loss, e.MaskedLoss is double m ? (float)m : null);
    }

    /// <summary>
    /// Training time of the run before this process: saved with the state (elapsed_s) and restored by Resume, so
    /// a resumed run's elapsed time goes on from where it stopped. Zero for a new run (and for a state written
    /// before it was saved; the CLI then takes it from the run folder's metrics).
    /// </summary>
    public TimeSpan ElapsedBefore { get; set; }

    private System.Diagnostics.Stopwatch? _clock; // this process's training time, running inside Run

    /// <summary>The run's training time so far: before this process, plus this process's time in Run.</summary>
    public TimeSpan Elapsed => ElapsedBefore + (_clock?.Elapsed ?? TimeSpan.Zero);

    /// <summary>
    /// Runs to the last step, logging and checkpointing as configured. stop() is polled between steps;
    /// onStep(step, loss) is called after every step (for a live progress view; it must be cheap).
    /// </summary>
    public void Run(Action<TrainLog> log, Func<bool>? stop = null, Action<long, float>? onStep = null)
    {
        var o = Options;
        long tokensPerStep = (long)o.BatchSize * Model.Config.NCtx;
        var clock = _clock = Stopwatch.StartNew();
        long startStep = Optimizer.Step;
        var rate = new StepRate(startStep);
        if (startStep == 0)
        {
            var (v0, r0) = Evaluate();
            log(new TrainLog(0, float.NaN, v0, r0, 0, 0, 0, Elapsed, TimeSpan.Zero) { ValBitsPerByte = BitsPerByte(v0) });
        }
        while (Optimizer.Step < o.Steps)
        {
            float loss = Step(); // throws, before any checkpoint of this step, if the loss or a gradient is not finite
            _lossSum += loss; _lossCount++;
            long s = Optimizer.Step;
            rate.Stepped(s, clock.Elapsed.TotalSeconds);
            onStep?.Invoke(s, loss);
            bool evalNow = s % o.EvalInterval == 0 || s == o.Steps;
            if (evalNow || s % o.LogInterval == 0)
            {
                double secs = clock.Elapsed.TotalSeconds;
                double tps = rate.StepsPerSecond(s, secs) * tokensPerStep;
                var eta = rate.Eta(s, o.Steps, secs);
                float? val = null, rep = null;
                if (evalNow) (val, rep) = Evaluate();
                var entry = new TrainLog(s, (float)(_lossSum / _lossCount), val, rep, LastLr, LastGradNorm, tps, Elapsed, eta)
                    { ValBitsPerByte = val is float vl ? BitsPerByte(vl) : null };
                History.Add(entry);
                log(entry);
                _lossSum = 0; _lossCount = 0;
            }
            bool saved = s % o.CheckpointInterval == 0 || s == o.Steps;
            if (saved) Save(o.Out);
            if (stop?.Invoke() == true && s < o.Steps) { if (!saved) Save(o.Out); break; }
        }
        // the time of this Run is the run's now: a later Run on the same trainer goes on from it
        ElapsedBefore = Elapsed;
        _clock = null;
    }

    /// <summary>
    /// Writes the training state first and the weights second, each atomically; both carry the step.
    /// The previous state is kept as *.train.prev.safetensors until the new weights are down, so a crash
    /// between the two writes leaves a pair that still resumes (old weights + previous state).
    /// </summary>
    public void Save(string path)
    {
        string statePath = Checkpoint.TrainStatePath(path);
        if (File.Exists(statePath) && File.Exists(path)) File.Move(statePath, PrevStatePath(path), overwrite: true);
        string step = Optimizer.Step.ToString(CultureInfo.InvariantCulture);
        var stateMeta = new Dictionary<string, string>
        {
            ["step"] = step,
            ["data_rng"] = _dataRng.Save(),
            ["options"] = Options.ToJson(),
            ["optimizer"] = Optimizer.Kind,
            ["loss_sum"] = _lossSum.ToString("R", CultureInfo.InvariantCulture),
            ["loss_count"] = _lossCount.ToString(CultureInfo.InvariantCulture),
            ["elapsed_s"] = Elapsed.TotalSeconds.ToString("R", CultureInfo.InvariantCulture),
        };
        var tensors = Checkpoint.Tensors(Optimizer.M, "adam.m.");
        tensors.AddRange(Checkpoint.Tensors(Optimizer.V, "adam.v."));
        SafeTensorsFile.Write(statePath, tensors, stateMeta);
        var weightsMeta = new Dictionary<string, string> { ["step"] = step };
        if (Options.InitSource != null) weightsMeta["init_from"] = Options.InitSource.ToJson(); // where a fine-tuned model came from
        Checkpoint.Save(path, Model, TokenizerJson, weightsMeta);
        LastSavedStep = Optimizer.Step;
    }

    private static string PrevStatePath(string checkpoint) => Checkpoint.TrainStatePath(checkpoint)[..^".safetensors".Length] + ".prev.safetensors";

    /// <summary>Continues a run from its checkpoint pair exactly where it stopped.</summary>
    public static Trainer Resume(string checkpoint, Func<TrainOptions, TrainOptions>? adjust = null, IKernels? kernels = null)
    {
        var loaded = Checkpoint.Load(checkpoint, kernels);
        // the state whose step matches the weights: normally *.train.safetensors; after a save that stopped
        // between writing the state and the weights, the previous one (see Save)
        string? weightStep = null;
        if (loaded.File is not { } weights || !weights.Metadata.TryGetValue("step", out weightStep))
            weightStep = null; // a converted GPT-2 (Hugging Face or llm.c) has no training state to resume
        string statePath = Checkpoint.TrainStatePath(checkpoint);
        SafeTensorsFile? st = null;
        string? stepText = null;
        foreach (var candidate in new[] { statePath, PrevStatePath(checkpoint) })
        {
            if (!File.Exists(candidate)) continue;
            var f = SafeTensorsFile.Open(candidate);
            f.Metadata.TryGetValue("step", out var s);
            if (st == null || s == weightStep) { st = f; statePath = candidate; stepText = s; }
            if (s == weightStep) break;
        }
        if (st == null)
            throw new UserError($"cannot resume: '{statePath}' (optimizer state) is missing beside the checkpoint; start a new run from the weights instead");
        if (!st.Metadata.TryGetValue("options", out var optJson) || stepText == null || !st.Metadata.TryGetValue("data_rng", out var rngText))
            throw new UserError($"cannot resume: '{statePath}' lacks step, options or RNG state");
        if (weightStep != stepText)
            throw new UserError($"cannot resume: '{checkpoint}' is at step {weightStep ?? "?"} but its optimizer state is at step {stepText}; resume from a consistent pair");
        var o = TrainOptions.FromJson(optJson);
        if (adjust != null) o = adjust(o);
        o.Validate();
        // a fine-tuning run encodes its data with its checkpoint's tokenizer, which is F's: F itself is not read again
        ITokenizer? own = loaded.TokenizerJson != null ? Tokenizers.FromJson(loaded.TokenizerJson) : null;
        var (data, tok, vocab) = LoadData(o, o.InitFrom != null ? (own, o.InitFrom) : null);
        if (vocab != loaded.Model.Config.DVocab)
            throw new UserError($"cannot resume: the data now gives d_vocab {vocab} but the checkpoint has {loaded.Model.Config.DVocab}");
        if (tok != null && loaded.TokenizerJson != null && tok.ToJson() != loaded.TokenizerJson)
            throw new UserError($"cannot resume: '{o.Data}' now gives a different {tok.Name} vocabulary than the checkpoint's tokenizer (the file changed?); resume with the original data");
        var t = new Trainer(o, loaded.Model, data, tok ?? own, Rng.Load(rngText), dataIsText: tok != null);
        Checkpoint.ReadInto(st, t.Optimizer.M, "adam.m.", statePath, rejectExtras: false);
        Checkpoint.ReadInto(st, t.Optimizer.V, "adam.v.", statePath, rejectExtras: false);
        t.Optimizer.Step = long.Parse(stepText, CultureInfo.InvariantCulture);
        t.LastSavedStep = t.Optimizer.Step;
        // states written before the loss accumulator was saved lack it: the next mean then covers fewer steps
        if (st.Metadata.TryGetValue("loss_sum", out var ls) && st.Metadata.TryGetValue("loss_count", out var lc)
            && double.TryParse(ls, NumberStyles.Float, CultureInfo.InvariantCulture, out double sum)
            && int.TryParse(lc, NumberStyles.Integer, CultureInfo.InvariantCulture, out int count) && count >= 0)
            (t._lossSum, t._lossCount) = (sum, count);
        if (st.Metadata.TryGetValue("elapsed_s", out var es) && double.TryParse(es, NumberStyles.Float, CultureInfo.InvariantCulture, out double e) && e >= 0)
            t.ElapsedBefore = TimeSpan.FromSeconds(e);
        return t;
    }
}
