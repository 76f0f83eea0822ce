using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Training;

namespace MiniGpt.Sae;

/// <summary>
/// The tokens an SAE is trained and measured on, split as train splits them: the induction task (its own validation
/// windows), a folder written by prepare (train.bin streamed from a memory map, val.bin held out), a bare .bin, or a
/// UTF-8 text tokenized with the checkpoint's own tokenizer (first 90 % to train, last 10 % held out).
/// </summary>
public static class SaeData
{
    public static IBatchSource Open(string data, Checkpoint.Loaded loaded)
    {
        var c = loaded.Model.Config;
        int T = c.NCtx;
        if (data == "induction") return new InductionTask(c.DVocab, T, new TrainOptions().Seed);
        if (Trainer.PreparedFiles(data) is (string trainBin, PreparedMeta meta))
        {
            if (loaded.TokenizerJson != null && loaded.TokenizerJson != meta.TokenizerJson)
                throw new UserError($"'{trainBin}' was prepared with another tokenizer than the checkpoint's: prepare the text with the checkpoint's tokenizer");
            string valBin = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(trainBin))!, "val.bin");
            var valMeta = PreparedMeta.Beside(valBin) ?? throw new UserError($"'{valBin}' is missing: prepare the corpus again");
            var train = new MappedTokens(trainBin, meta);
            var val = new MappedTokens(valBin, valMeta);
            if (train.Length < T + 1 || val.Length < T + 1) throw new UserError($"'{trainBin}' or '{valBin}' holds fewer than n_ctx+1 = {T + 1} tokens: prepare more text");
            return new MappedWindows(train, val, trainBin);
        }
        TokenFile.CheckExists(data);
        int[] ids;
        if (TokenFile.IsTokenFile(data)) ids = TokenFile.ReadBin(data, c.DVocab);
        else
        {
            if (loaded.TokenizerJson == null)
                throw new UserError($"the checkpoint has no tokenizer, so '{data}' cannot be read as text: give --data induction, a .bin of token ids, or a folder written by prepare");
            var tok = Tokenizers.FromJson(loaded.TokenizerJson);
            ids = tok.Encode(TokenFile.ReadText(data), data);
        }
        var (tr, va) = Trainer.Split(ids);
        if (tr.Length < T + 1 || va.Length < T + 1)
            throw new UserError($"'{data}' has {ids.Length:N0} tokens: too few for windows of n_ctx+1 = {T + 1} in both its first 90 % and last 10 %; give more text");
        return new TokenWindows(tr, va, data, T);
    }
}
