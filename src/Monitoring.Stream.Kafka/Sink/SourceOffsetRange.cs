using System.Globalization;

namespace Monitoring.Stream.Kafka.Sink;

/// <summary>
/// Where in one partition of the points topic the points of an aggregate message can have come from: every point of
/// that partition in the message was read from an offset in [<see cref="Low"/>, <see cref="High"/>]. Carried in the
/// header <see cref="AggregateHeaders.SourceOffsets"/> (docs/kafka.md, "Duplicates and how to remove them").
/// </summary>
/// <param name="Topic">The points topic.</param>
/// <param name="Partition">The partition.</param>
/// <param name="Low">The instance's committed offset of the partition when it wrote the message (or the first offset it read, if higher): no point below it is in the message.</param>
/// <param name="High">The last offset the instance had read from the partition when it wrote the message: no point above it is in the message.</param>
public sealed record SourceOffsetRange(string Topic, int Partition, long Low, long High)
{
    /// <summary>Formats ranges as the header's text: <c>topic/partition:low-high</c>, comma-separated.</summary>
    public static string Format(IEnumerable<SourceOffsetRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        return string.Join(",", ranges.Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Topic}/{r.Partition}:{r.Low}-{r.High}")));
    }

    /// <summary>Parses the header's text (see <see cref="Format"/>); an empty text has no ranges.</summary>
    /// <exception cref="FormatException">The text is not in that form.</exception>
    public static IReadOnlyList<SourceOffsetRange> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ranges = new List<SourceOffsetRange>();
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = item.LastIndexOf(':');
            int slash = colon < 0 ? -1 : item.LastIndexOf('/', colon);
            int dash = colon < 0 ? -1 : item.IndexOf('-', colon);
            if (slash <= 0 || dash < 0)
            {
                throw new FormatException($"'{item}' is not topic/partition:low-high.");
            }

            ranges.Add(new SourceOffsetRange(
                item[..slash],
                int.Parse(item.AsSpan(slash + 1, colon - slash - 1), NumberStyles.None, CultureInfo.InvariantCulture),
                long.Parse(item.AsSpan(colon + 1, dash - colon - 1), NumberStyles.None, CultureInfo.InvariantCulture),
                long.Parse(item.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture)));
        }

        return ranges;
    }
}
