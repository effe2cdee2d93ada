namespace Monitoring.Stream.Model;

/// <summary>A dense identifier of one series (metric and label set), assigned once by a <see cref="Series.SeriesRegistry"/>.</summary>
/// <param name="Value">The index of the series in its registry, from zero.</param>
public readonly record struct SeriesId(int Value)
{
    /// <inheritdoc />
    public override string ToString() => $"#{Value}";
}
