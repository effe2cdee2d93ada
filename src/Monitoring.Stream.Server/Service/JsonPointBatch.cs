using System.Text;
using System.Text.Json;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// The JSON form of an ingest body (docs/http-api.md): <c>{"points":[{"metric":"m","labels":{"k":"v"},"value":1.5,"timestamp":1800000000000}]}</c>.
/// Parsed and checked whole before any point is written.
/// </summary>
internal sealed class JsonPointBatch
{
    private const int MaxDepth = 8;

    private static readonly string[] s_bodyFields = ["points"];
    private static readonly string[] s_pointFields = ["metric", "labels", "value", "timestamp"];

    private JsonPointBatch(string[] metrics, Label[][] labels, double[] values, long?[] timestamps)
    {
        Metrics = metrics;
        Labels = labels;
        Values = values;
        Timestamps = timestamps;
    }

    /// <summary>Each point's metric.</summary>
    public string[] Metrics { get; }

    /// <summary>Each point's labels.</summary>
    public Label[][] Labels { get; }

    /// <summary>Each point's value.</summary>
    public double[] Values { get; }

    /// <summary>Each point's timestamp in ms since the epoch, or null to stamp it with the engine's clock.</summary>
    public long?[] Timestamps { get; }

    /// <summary>Parses <paramref name="body"/>; on a malformed body returns null and says why in <paramref name="error"/>.</summary>
    public static JsonPointBatch? Parse(ReadOnlyMemory<byte> body, int maxPoints, int maxLabels, int maxStringBytes, out string? error)
    {
        error = null;
        try
        {
            using JsonDocument document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = MaxDepth });
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("points", out JsonElement points) || points.ValueKind != JsonValueKind.Array)
            {
                error = "the body must be an object with a \"points\" array";
                return null;
            }

            // JSON leaves duplicate names to the reader, which keeps one of them: a second "points" array would be
            // dropped without a counter, so a batch that names a field twice is refused whole.
            if (Duplicate(root, s_bodyFields) is string repeated)
            {
                error = $"the body names \"{repeated}\" more than once";
                return null;
            }

            int count = points.GetArrayLength();
            if (count > maxPoints)
            {
                error = $"{count} points in one request; at most {maxPoints}";
                return null;
            }

            var metrics = new string[count];
            var labels = new Label[count][];
            var values = new double[count];
            var timestamps = new long?[count];
            int i = 0;
            foreach (JsonElement point in points.EnumerateArray())
            {
                string where = $"points[{i}]";
                if (point.ValueKind != JsonValueKind.Object)
                {
                    error = $"{where} must be an object";
                    return null;
                }

                if (Duplicate(point, s_pointFields) is string twice)
                {
                    error = $"{where} names \"{twice}\" more than once";
                    return null;
                }

                if (!point.TryGetProperty("metric", out JsonElement metric) || metric.ValueKind != JsonValueKind.String)
                {
                    error = $"{where}.metric must be a string";
                    return null;
                }

                metrics[i] = metric.GetString()!;
                if (Encoding.UTF8.GetByteCount(metrics[i]) > maxStringBytes)
                {
                    error = $"{where}.metric is longer than {maxStringBytes} bytes";
                    return null;
                }

                if (!point.TryGetProperty("value", out JsonElement value) || value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out values[i]))
                {
                    error = $"{where}.value must be a number";
                    return null;
                }

                if (point.TryGetProperty("timestamp", out JsonElement ts) && ts.ValueKind != JsonValueKind.Null)
                {
                    if (ts.ValueKind != JsonValueKind.Number || !ts.TryGetInt64(out long ms))
                    {
                        error = $"{where}.timestamp must be whole milliseconds since the Unix epoch";
                        return null;
                    }

                    timestamps[i] = ms;
                }

                labels[i] = [];
                if (point.TryGetProperty("labels", out JsonElement map) && map.ValueKind != JsonValueKind.Null)
                {
                    if (map.ValueKind != JsonValueKind.Object)
                    {
                        error = $"{where}.labels must be an object of strings";
                        return null;
                    }

                    var list = new List<Label>();
                    foreach (JsonProperty label in map.EnumerateObject())
                    {
                        if (label.Value.ValueKind != JsonValueKind.String)
                        {
                            error = $"{where}.labels.{Shorten(label.Name)} must be a string";
                            return null;
                        }

                        if (list.Count == maxLabels)
                        {
                            error = $"{where} has more than {maxLabels} labels";
                            return null;
                        }

                        string text = label.Value.GetString()!;
                        if (Encoding.UTF8.GetByteCount(label.Name) > maxStringBytes || Encoding.UTF8.GetByteCount(text) > maxStringBytes)
                        {
                            error = $"{where}.labels.{Shorten(label.Name)} is longer than {maxStringBytes} bytes";
                            return null;
                        }

                        list.Add(new Label(label.Name, text));
                    }

                    labels[i] = [.. list];
                }

                i++;
            }

            return new JsonPointBatch(metrics, labels, values, timestamps);
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json throws this, not a JsonException, when it unescapes a string (a value or a name) holding
            // "\uD800" without its pair: valid JSON syntax, but not text. It used to escape as a 500.
            error = "a string holds an escaped UTF-16 surrogate without its pair (\\uD800-\\uDFFF alone), which is not text";
            return null;
        }
        catch (JsonException e)
        {
            // Where, not the parser's message: no answer carries an exception message (docs/http-api.md).
            error = e.LineNumber is long line && e.BytePositionInLine is long column
                ? $"not valid JSON (or nested deeper than {MaxDepth} levels) at line {line + 1}, byte {column + 1} of that line"
                : $"not valid JSON (or nested deeper than {MaxDepth} levels)";
            return null;
        }
    }

    /// <summary>The first of <paramref name="fields"/> that <paramref name="element"/> names more than once, or null.</summary>
    private static string? Duplicate(JsonElement element, string[] fields)
    {
        Span<int> seen = stackalloc int[fields.Length];
        foreach (JsonProperty property in element.EnumerateObject())
        {
            for (int f = 0; f < fields.Length; f++)
            {
                if (property.NameEquals(fields[f]) && ++seen[f] > 1)
                {
                    return fields[f];
                }
            }
        }

        return null;
    }

    /// <summary>A name from the body as an answer may quote it: at most 64 characters, so an answer never echoes a huge field.</summary>
    private static string Shorten(string name) => name.Length <= 64 ? name : string.Concat(name.AsSpan(0, 64), "…");
}
