namespace Monitoring.Stream.Statistics;

// The window summary path: what a closed window needs of its sketch, in one pass.
public sealed partial class DdSketch
{
    /// <summary>
    /// What a closed window needs of its sketch: the quantiles and the serialized bytes, from one
    /// look at the occupied bin ranges. <paramref name="destination"/> holds at least <see cref="SummaryBound"/> bytes.
    /// </summary>
    /// <remarks>
    /// The quantiles come out of the pass that writes the positive store (negative bins and the zero
    /// bin, below it in value, are counted first); answers and bytes are exactly those of
    /// <see cref="GetQuantiles"/> and <see cref="Serialize(Span{byte})"/> (tested).
    /// </remarks>
    /// <returns>The number of bytes written.</returns>
    internal int WriteSummary(ReadOnlySpan<double> sortedQuantiles, Span<double> results, Span<byte> destination)
    {
        Span<ulong> thresholds = sortedQuantiles.Length <= RankCursor.StackQuantiles ? stackalloc ulong[RankCursor.StackQuantiles] : new ulong[sortedQuantiles.Length];
        var ranks = new RankCursor(this, sortedQuantiles, results, thresholds);
        DdSketchBinStore.Occupied negative = _negative.GetOccupied();
        DdSketchBinStore.Occupied positive = _positive.GetOccupied();
        ranks.WalkNegativeAndZero(negative);
        int written = WriteSketch(destination, negative, positive, ref ranks);
        ranks.Finish();
        return written;
    }
}
