using Monitoring.Stream.Model;

namespace Monitoring.Stream.Tests.Model;

public class LabelSetTests
{
    [Fact]
    public void Create_Unsorted_SortsByNameOrdinal()
    {
        LabelSet set = LabelSet.Create(new("zone", "eu"), new("Host", "a"), new("app", "api"));

        Assert.Equal(["Host", "app", "zone"], set.AsSpan().ToArray().Select(l => l.Name));
    }

    [Fact]
    public void Create_EmptyValue_LabelIsAbsent()
    {
        LabelSet set = LabelSet.Create(new("a", "1"), new("b", ""));

        Assert.Equal(LabelSet.Create(new Label("a", "1")), set);
        Assert.Null(set.GetValue("b"));
    }

    [Fact]
    public void Create_DuplicateName_ThrowsWithReason()
    {
        var error = Assert.Throws<MetricValidationException>(() => LabelSet.Create(new("a", "1"), new("a", "2")));

        Assert.Equal(RejectReason.DuplicateLabelName, error.Reason);
        Assert.Contains("'a'", error.Message);
    }

    [Fact]
    public void Create_InvalidName_ThrowsWithReason()
    {
        var error = Assert.Throws<MetricValidationException>(() => LabelSet.Create(new Label("bad-name", "1")));

        Assert.Equal(RejectReason.InvalidLabelName, error.Reason);
    }

    [Fact]
    public void Equals_SameLabelsDifferentOrder_EqualWithSameHash()
    {
        LabelSet a = LabelSet.Create(new("x", "1"), new("y", "2"));
        LabelSet b = LabelSet.Create(new("y", "2"), new("x", "1"));

        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, LabelSet.Create(new("x", "1"), new("y", "3")));
    }

    [Fact]
    public void ToString_EscapesQuotesBackslashesAndNewlines()
    {
        LabelSet set = LabelSet.Create(new Label("path", "a\"b\\c\nd"));

        Assert.Equal("{path=\"a\\\"b\\\\c\\nd\"}", set.ToString());
    }
}
