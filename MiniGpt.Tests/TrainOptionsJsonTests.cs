using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Model;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The options saved beside a checkpoint: they read back as written, and so do those of states written before the model became a record.</summary>
public class TrainOptionsJsonTests
{
    /// <summary>
    /// The options of a training state as the code before TrainOptions.Model wrote them (copied from the state of
    /// `train --n-layers 2 --d-model 32 --n-heads 2 --n-ctx 16 --batch-size 8 --warmup-steps 5 --eval-batches 2
    /// --seed 7 --steps 20 --eval-interval 10 --log-interval 5 --normalization none`): the shape flat among the
    /// other settings, null where the data or other values decide.
    /// </summary>
    private const string FlatOptions =
        """{"n_layers":2,"d_model":32,"n_heads":2,"d_head":null,"d_mlp":null,"n_ctx":16,"d_vocab":null,"attn_only":null,"normalization":"none","positional_embedding":"standard","init_range":null,"tie_embeddings":false,"optimizer":"adamw","batch_size":8,"steps":20,"lr":0.003,"min_lr":0.0003,"warmup_steps":5,"weight_decay":0.1,"beta1":0.9,"beta2":0.99,"grad_clip":1,"eval_interval":10,"eval_batches":2,"log_interval":5,"checkpoint_interval":500,"seed":7,"data":"induction","val":null,"tokenizer":"char","out":"OUT"}""";

    private static readonly string[] FlatRun =
        ["--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--n-ctx", "16", "--batch-size", "8", "--warmup-steps", "5", "--eval-batches", "2",
         "--seed", "7", "--steps", "20", "--eval-interval", "10", "--log-interval", "5", "--normalization", "none", "--threads", "2"];

    [Fact]
    public void OptionsReadBackAsWrittenUnsetValuesIncluded()
    {
        var cases = new[]
        {
            new TrainOptions(),
            new TrainOptions().Resolved(),
            new TrainOptions
            {
                Data = "corpus.txt", Val = "val.txt", Tokenizer = "bpe:300", TieEmbeddings = true, Lr = 1e-3f, MinLr = 0, Seed = ulong.MaxValue,
                Model = new ModelConfig { NLayers = 3, DModel = 48, NHeads = 6, DHead = 10, DMlp = 100, NCtx = 24, DVocab = 300, AttnOnly = false,
                    NormalizationType = null, PositionalEmbeddingType = "shortformer", InitRange = 0.05 },
            },
            new TrainOptions { Model = new ModelConfig { NLayers = 0, AttnOnly = true } },
        };
        foreach (var o in cases)
        {
            var back = TrainOptions.FromJson(o.ToJson());
            Assert.Equal(o, back);
            Assert.Equal(o.Model.AttnOnlyGiven, back.Model.AttnOnlyGiven);
        }
        // the unset values are TransformerLens's: -1, or null where it uses None
        var model = JsonNode.Parse(new TrainOptions().ToJson())!["model"]!;
        Assert.Equal(-1, model["d_head"]!.GetValue<int>());
        Assert.Equal(-1, model["d_vocab"]!.GetValue<int>());
        Assert.Null(model["d_mlp"]);
        Assert.Null(model["attn_only"]);
        Assert.Equal(-1, model["initializer_range"]!.GetValue<double>());
    }

    [Fact]
    public void TheFlatOptionsOfOlderStatesReadAsTheSameSettings()
    {
        var o = TrainOptions.FromJson(FlatOptions);
        var expected = new TrainOptions
        {
            Model = new ModelConfig { NLayers = 2, DModel = 32, NHeads = 2, NCtx = 16, NormalizationType = null },
            BatchSize = 8, Steps = 20, Lr = 0.003f, MinLr = 0.0003f, WarmupSteps = 5, EvalInterval = 10, EvalBatches = 2, LogInterval = 5,
            Seed = 7, Out = "OUT",
        };
        Assert.Equal(expected, o);
        Assert.False(o.Model.AttnOnlyGiven); // null then: the data decided
        // every flat model setting given, and LayerNorm
        var given = JsonNode.Parse(FlatOptions)!.AsObject();
        given["d_head"] = 8; given["d_mlp"] = 100; given["d_vocab"] = 70; given["attn_only"] = false; given["normalization"] = "LN";
        given["positional_embedding"] = "shortformer"; given["init_range"] = 0.05;
        Assert.Equal(new ModelConfig
        {
            NLayers = 2, DModel = 32, NHeads = 2, DHead = 8, DMlp = 100, NCtx = 16, DVocab = 70, AttnOnly = false,
            NormalizationType = "LN", PositionalEmbeddingType = "shortformer", InitRange = 0.05,
        }, TrainOptions.FromJson(given.ToJsonString()).Model);
        // a damaged model is a one-line error, not a default model
        var damaged = JsonNode.Parse(new TrainOptions().ToJson())!.AsObject();
        damaged["model"] = 5;
        Assert.Contains("'model' that is not a JSON object", Assert.Throws<UserError>(() => TrainOptions.FromJson(damaged.ToJsonString())).Message);
        damaged["model"] = new JsonObject { ["d_model"] = "wide" };
        Assert.Contains("'d_model' must be an integer", Assert.Throws<UserError>(() => TrainOptions.FromJson(damaged.ToJsonString())).Message);
        Assert.Contains("twice", Assert.Throws<UserError>(() => TrainOptions.FromJson("""{"steps":1,"steps":2}""")).Message);
        Assert.Contains("twice", Assert.Throws<UserError>(() => TrainOptions.FromJson("""{"model":{"n_layers":1,"n_layers":2}}""")).Message);
        Assert.Contains("twice", Assert.Throws<UserError>(() => ModelConfig.FromJson("""{"n_layers":1,"n_layers":2,"d_model":8,"n_ctx":4,"d_vocab":5}""")).Message);
    }

    [Fact]
    public void ARunFolderWhoseStateHasTheFlatOptionsResumesBitForBit()
    {
        string root = TestPaths.TempDir("flat-resume");
        var full = TestPaths.Cli(["train", .. FlatRun, "--runs-dir", root, "--name", "full"]);
        Assert.True(full.Code == 0, full.Err);

        // the same run as the older code left it at step 10: its checkpoint pair, whose state holds the flat
        // options, beside the run folder's config.json and metrics.jsonl (which resume cuts back to step 10)
        string part = Path.Combine(root, "part");
        Directory.CreateDirectory(part);
        foreach (string f in new[] { "config.json", "metrics.jsonl" }) File.Copy(Path.Combine(root, "full", f), Path.Combine(part, f));
        string ckpt = Path.Combine(part, "model.safetensors");
        var first = Trainer.Start(TrainOptions.FromJson(FlatOptions) with { Out = ckpt });
        first.Run(_ => { }, stop: () => first.Optimizer.Step == 10);
        string state = Checkpoint.TrainStatePath(ckpt);
        RewriteMetadata(state, "options", FlatOptions.Replace("\"OUT\"", JsonSerializer.Serialize(ckpt)));
        Assert.StartsWith("{\"n_layers\":2,", SafeTensorsFile.Open(state).Metadata["options"]);

        var resumed = TestPaths.Cli("train", "--resume", part, "--threads", "1");
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.Contains($"resuming {part} at step 10 of 20", resumed.Out);
        Assert.Contains("no LayerNorm", resumed.Out);
        Assert.Equal(RunFolderTests.Curve(Path.Combine(root, "full")), RunFolderTests.Curve(part));
        Assert.Equal(File.ReadAllBytes(Path.Combine(root, "full", "model.safetensors")), File.ReadAllBytes(ckpt));
        Directory.Delete(root, true);
    }

    /// <summary>Replaces one __metadata__ entry of a safetensors file: 8-byte little-endian header length, JSON header, tensor bytes.</summary>
    private static void RewriteMetadata(string path, string key, string value)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int n = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        var header = JsonNode.Parse(bytes.AsSpan(8, n))!.AsObject();
        header["__metadata__"]![key] = value;
        string json = header.ToJsonString();
        byte[] h = Encoding.UTF8.GetBytes(json.PadRight(json.Length + 7 - (Encoding.UTF8.GetByteCount(json) + 7) % 8)); // spaces keep the data 8-byte aligned
        var fixedLength = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(fixedLength, (ulong)h.Length);
        File.WriteAllBytes(path, [.. fixedLength, .. h, .. bytes.AsSpan(8 + n)]);
    }
}
