using MiniGpt.Checkpoints;

namespace MiniGpt.Train;

/// <summary>
/// convert: a checkpoint in any layout MiniGpt reads (its own safetensors, a Hugging Face GPT-2 folder, llm.c's .bin)
/// written as MiniGpt's own checkpoint or, for a GPT-2-shaped model, in the Hugging Face layout, so a model moves to
/// PyTorch (transformers) and back with the same logits.
/// </summary>
public static class ConvertVerb
{
    private static readonly Option<string> Out = Option.Required("out", "where to write: a .safetensors file (minigpt) or a folder (hf)", "F");
    private static readonly Option<string> To = Option.Text("to", "minigpt (MiniGpt's safetensors, TransformerLens names) or hf (GPT2LMHeadModel's model.safetensors + config.json)", "minigpt").Choices("minigpt", "hf");
    private static readonly Option<bool> Overwrite = Option.Flag("overwrite", "replace --out if it exists");

    internal static Options Declare() =>
        new Options("convert", "convert: a checkpoint (MiniGpt safetensors, Hugging Face GPT-2 folder, or llm.c gpt2_*.bin) written as MiniGpt's\n" +
                               "checkpoint or, for a GPT-2-shaped model (LayerNorm, MLPs, tied W_U = W_Eᵀ, no b_U), in the Hugging Face layout.",
            SharedOptions.Checkpoint, Out, To, Overwrite, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        string to = o.Get(To), dst = o.Get(Out), src = o.Get(SharedOptions.Checkpoint);
        if (to is not ("minigpt" or "hf")) throw new UsageError($"--to '{to}' is not a layout: use minigpt or hf");
        bool exists = to == "hf" ? File.Exists(Path.Combine(dst, "model.safetensors")) || File.Exists(dst) : File.Exists(dst) || Directory.Exists(dst);
        if (exists && !o.Get(Overwrite)) throw new UserError($"--out '{dst}' exists: give another path or --overwrite");
        var loaded = Checkpoint.Load(src);
        if (to == "hf")
        {
            HuggingFaceGpt2.Save(dst, loaded.Model);
            stdout.WriteLine($"wrote {Path.Combine(dst, "model.safetensors")} and {Path.Combine(dst, "config.json")} (GPT-2, {loaded.Model.ParameterCount:N0} parameters)");
        }
        else
        {
            Checkpoint.Save(dst, loaded.Model, loaded.TokenizerJson);
            stdout.WriteLine($"wrote {dst} ({loaded.Model.ParameterCount:N0} parameters, TransformerLens names)");
        }
        return 0;
    }
}
