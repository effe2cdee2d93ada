namespace Monitoring.Stream.Model;

/// <summary>One label of a series: a name following the Prometheus data model and a value.</summary>
/// <param name="Name">The label name, <c>[a-zA-Z_][a-zA-Z0-9_]*</c>, not starting with <c>__</c>.</param>
/// <param name="Value">The label value: any text; an empty value means the label is absent.</param>
public readonly record struct Label(string Name, string Value)
{
    /// <inheritdoc />
    public override string ToString() => $"{Name}=\"{Value}\"";
}
