//! The quiz's questions, grading and CSV export, checked without a server.

use super::*;

#[test]
fn there_are_sixteen_questions_two_auto_graded() {
    let all = questions();
    assert_eq!(all.len(), 16);
    let auto: Vec<_> = all.iter().filter(|(item, _)| item.auto_graded()).collect();
    assert_eq!(auto.len(), 2);
    assert!(all.iter().any(|(item, _)| item.key == "hyperparameters-1"));
}

#[test]
fn the_steps_question_accepts_100_in_any_spelling() {
    let (item, grading) = question("hyperparameters-1").unwrap();
    let key = grading.key.unwrap();
    for right in ["100", " 100 ", "100.0", "1e2"] {
        assert_eq!(auto_grade(&item, &key, right).unwrap().0, item.max_points);
    }
    assert_eq!(auto_grade(&item, &key, "10").unwrap().0, 0.0);
    assert!(auto_grade(&item, &key, "a hundred").is_err());
    assert!(auto_grade(&item, &key, "NaN").is_err());
    // A decimal comma is a decimal point, never a thousands separator.
    assert_eq!(auto_grade(&item, &key, "100,0").unwrap().0, item.max_points);
    assert_eq!(auto_grade(&item, &key, "1000").unwrap().0, 0.0);
}

#[test]
fn numbers_read_with_either_separator_or_a_clear_message() {
    let read = |text: &str| read_number(text).unwrap();
    assert_eq!(read("100,0"), 100.0);
    assert_eq!(read("0,65"), 0.65);
    assert_eq!(read("100.5"), 100.5);
    assert_eq!(read("1 000"), 1000.0);
    assert_eq!(read("1\u{a0}000"), 1000.0);
    assert_eq!(read("1,234,567"), 1_234_567.0);
    assert_eq!(read("1.234.567"), 1_234_567.0);
    assert_eq!(read("1,234.5"), 1234.5);
    assert_eq!(read("1.234,5"), 1234.5);
    assert_eq!(read("-2,5"), -2.5);
    assert_eq!(read("0,125"), 0.125);
    assert_eq!(read("1e-3"), 0.001);
    let ambiguous = read_number("1,234").unwrap_err();
    assert!(ambiguous.contains("could mean two numbers"), "{ambiguous}");
    for bad in [
        "1,2,3", "1.2.3", "12,34.5", "1.2,3.4", "", "inf", "5 apples",
    ] {
        assert!(read_number(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_model_choice_question_wants_deberta() {
    let (item, grading) = question("model-choice-2").unwrap();
    let key = grading.key.unwrap();
    assert_eq!(auto_grade(&item, &key, "DeBERTa").unwrap().0, 1.0);
    assert_eq!(auto_grade(&item, &key, "RoBERTa-base").unwrap().0, 0.0);
    assert!(auto_grade(&item, &key, "GPT-5").is_err());
}

#[test]
fn csv_cells_are_quoted_and_formulas_defused() {
    assert_eq!(text_cell("a \"b\", c"), "\"a \"\"b\"\", c\"");
    assert_eq!(text_cell("=SUM(A1)"), "\"'=SUM(A1)\"");
    assert_eq!(text_cell("Zoë"), "\"Zoë\"");
}
